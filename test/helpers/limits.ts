/**
 * Load and assertions of the rate-limit tests: a bounded, paced load from keep-alive
 * clients, one 429 checked with its fields and log line, and the admitted count against
 * what the limit allows.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import { parseProxyStatus } from '../../src/failures/proxy-status.ts'
import type { TestGateway } from './gateway.ts'
import { sendFrom, type FromReply } from './from.ts'

/** Result of {@link load}. */
export interface LoadResult {
  ok: number
  limited: number
  other: number
  /** From the first request sent to the last one sent, in s. */
  seconds: number
  /** One 429, to look at. */
  sample: FromReply | null
  /** Each answer: when it came (ms since the start of the load) and its status (0: the request failed). */
  answers: Array<{ atMs: number; status: number }>
}

/**
 * Sends requests from `clients` keep-alive connections, each one request every `everyMs`,
 * for `seconds`: about `clients × 1000 / everyMs` requests a second, a bounded load.
 */
export async function load(port: number, seconds: number, clients: number, everyMs: number, headers: (i: number) => http.OutgoingHttpHeaders = () => ({})): Promise<LoadResult> {
  const out: LoadResult = { ok: 0, limited: 0, other: 0, seconds: 0, sample: null, answers: [] }
  const t0 = performance.now()
  const end = t0 + seconds * 1000
  const agents: http.Agent[] = []
  let last = t0
  const one = async (i: number): Promise<void> => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    agents.push(agent)
    // Staggered, so the clients' requests interleave instead of arriving in bursts.
    let next = t0 + (i * everyMs) / clients
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, next - performance.now())))
    while (next < end) {
      last = Math.max(last, performance.now())
      const r = await sendFrom(port, { agent, headers: headers(i) }).catch(() => ({ status: 0, headers: {}, body: '' }))
      out.answers.push({ atMs: performance.now() - t0, status: r.status })
      if (r.status === 200) out.ok++
      else if (r.status === 429) {
        out.limited++
        out.sample ??= r
      } else out.other++
      next += everyMs
      const wait = next - performance.now()
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
    }
  }
  await Promise.all(Array.from({ length: clients }, (_, i) => one(i)))
  out.seconds = (last - t0) / 1000
  for (const a of agents) a.destroy()
  return out
}

/** Checks one 429 of the rate limit `name` and its log line. */
export async function expectLimited(gw: TestGateway, r: FromReply, name: string, policy: string): Promise<void> {
  assert.equal(r.status, 429)
  const own = parseProxyStatus(String(r.headers['proxy-status'])).at(-1)
  assert.equal(own?.params.error, 'http_request_denied')
  assert.equal(own?.params.details, 'rate_limited')
  const retryAfter = Number(r.headers['retry-after'])
  assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1, `Retry-After ${r.headers['retry-after']}`)
  assert.equal(r.headers['ratelimit-policy'], policy)
  assert.match(String(r.headers.ratelimit), new RegExp(`^"${name}";r=0;t=\\d+$`))
  assert.ok(r.body.includes('A rate limit refused the request'))
  const rec = await gw.record(String(r.headers['x-request-id']))
  assert.equal(rec.status, 429)
  assert.equal(rec.error, 'http_request_denied')
  assert.equal(rec.upstream_status, null)
  assert.match(rec.details ?? '', new RegExp(`^rate_limited: rate limit ${name} `))
}

/** Asserts the admitted count is within ±10 % of what the limit allows over the load's duration, and returns the ratio. */
export function assertAccuracy(admitted: number, perSecond: number, burst: number, seconds: number, what: string): number {
  const expected = perSecond * seconds + burst + 1
  const ratio = admitted / expected
  assert.ok(Math.abs(ratio - 1) <= 0.1, `${what}: ${admitted} admitted in ${seconds.toFixed(2)} s, expected ${expected.toFixed(1)} ± 10 % (ratio ${ratio.toFixed(3)})`)
  return ratio
}


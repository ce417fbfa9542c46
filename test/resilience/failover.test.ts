/**
 * Failover under steady load: one of three endpoints is killed and later restarted on the
 * same port while clients keep sending; clients must see no error, and the active health
 * checks must mark the endpoint down and up again within their configured thresholds.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import { test } from 'node:test'
import { endpointOf } from '../helpers/expect.ts'
import { oneUpstream, testEnv, waitFor } from '../helpers/gateway.ts'

const env = testEnv()

const INTERVAL_MS = 200
const TIMEOUT_MS = 200
const UNHEALTHY = 2
const HEALTHY = 2
/** Jitter is 10% of the interval by default: at most this much extra per check. */
const JITTER_MS = INTERVAL_MS / 10
/** Scheduling slack on a shared machine. */
const MARGIN_MS = 400

const RUN_MS = 12_000
const RATE_PER_S = 175
const TICK_MS = 20

test('killing one of three endpoints under steady load: no client error, marked down and back up within the thresholds', { timeout: 30_000 }, async (t) => {
  const labs = [await env.lab('ok'), await env.lab('ok'), await env.lab('ok')]
  const victim = labs[1]
  const gw = await env.gateway(oneUpstream(labs.map((l) => l.url), {
    timeouts: { connect: '300ms', response_header: '2s', idle: '2s' },
    retries: { attempts: 3 },
    health_check: { path: '/healthz', interval: `${INTERVAL_MS}ms`, timeout: `${TIMEOUT_MS}ms`, unhealthy_threshold: UNHEALTHY, healthy_threshold: HEALTHY },
  }))
  const endpoint = gw.gateway.runtime.pools.get('default')!.endpoints[1]
  assert.equal(endpoint.label, endpointOf(victim.url))

  const agent = new http.Agent({ keepAlive: true, maxSockets: 32 })
  env.defer(() => agent.destroy())
  const statuses = new Map<number, number>()
  const failures: string[] = []
  let inFlight = 0
  const one = () => new Promise<void>((resolve) => {
    inFlight++
    const req = http.get({ host: '127.0.0.1', port: gw.port, path: '/', agent }, (res) => {
      res.resume()
      res.once('end', () => {
        statuses.set(res.statusCode ?? 0, (statuses.get(res.statusCode ?? 0) ?? 0) + 1)
        if ((res.statusCode ?? 0) >= 300) failures.push(`${res.statusCode} ${res.headers['proxy-status']}`)
        inFlight--
        resolve()
      })
    })
    req.setTimeout(5000, () => req.destroy(new Error('client timeout')))
    req.once('error', (err) => {
      statuses.set(0, (statuses.get(0) ?? 0) + 1)
      failures.push(err.message)
      inFlight--
      resolve()
    })
  })

  // Open-loop load: a fixed number of requests every tick, whatever the responses do.
  const perTick = (RATE_PER_S * TICK_MS) / 1000
  const pending: Promise<void>[] = []
  let owed = 0
  const load = setInterval(() => {
    owed += perTick
    for (; owed >= 1; owed--) pending.push(one())
  }, TICK_MS)
  const t0 = performance.now()
  const at = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms - (performance.now() - t0))))

  await at(RUN_MS / 3)
  assert.equal(endpoint.healthy, true, 'up before the kill')
  const port = victim.port
  await victim.close()
  const killedAt = performance.now()
  const downLimit = UNHEALTHY * (INTERVAL_MS + JITTER_MS) + TIMEOUT_MS + MARGIN_MS
  await waitFor('endpoint marked down', () => (endpoint.healthy ? undefined : true), downLimit + 1000)
  const downMs = performance.now() - killedAt
  assert.equal(endpoint.downReason, 'connection_refused')

  await at((2 * RUN_MS) / 3)
  await env.lab('ok', { port })
  const restartedAt = performance.now()
  const upLimit = HEALTHY * (INTERVAL_MS + JITTER_MS) + TIMEOUT_MS + MARGIN_MS
  await waitFor('endpoint back up', () => (endpoint.healthy ? true : undefined), upLimit + 1000)
  const upMs = performance.now() - restartedAt
  const recordsAtUp = gw.records.length

  await at(RUN_MS)
  clearInterval(load)
  await Promise.all(pending)
  assert.equal(inFlight, 0)

  const total = [...statuses.values()].reduce((a, b) => a + b, 0)
  assert.ok(total >= RATE_PER_S * (RUN_MS / 1000) * 0.8, `sent ${total} requests`)
  assert.deepEqual(failures, [], `non-2xx or failed: ${JSON.stringify(Object.fromEntries(statuses))}`)
  assert.ok(downMs <= downLimit, `marked down after ${downMs.toFixed(0)}ms, limit ${downLimit}ms`)
  assert.ok(upMs <= upLimit, `back up after ${upMs.toFixed(0)}ms, limit ${upLimit}ms`)
  // Back in rotation too: ejected by outlier detection while dead, its return is not held back.
  const servedAfter = gw.records.slice(recordsAtUp).filter((r) => r.endpoint === endpoint.label && r.attempts === 1).length
  assert.ok(servedAfter > 0, 'the restarted endpoint serves requests again')
  const retried = gw.records.filter((r) => r.attempts > 1).length
  t.diagnostic(`requests ${total}, retried ${retried}, down after ${downMs.toFixed(0)}ms, up after ${upMs.toFixed(0)}ms`)
})

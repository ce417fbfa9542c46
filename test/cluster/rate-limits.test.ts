// A `local` rate limit with worker processes (`portico serve --workers 2`): one limit for
// the host. Requests on fresh connections reach both workers; together they are admitted
// at the configured rate within ±10 %, not at twice it.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { useTempDir } from '../config/temp-dir.ts'
import { assertAccuracy } from '../helpers/limits.ts'
import { backend, getFresh, logLinesOf, startCluster } from './cluster.ts'

const dir = useTempDir('portico-limits-')

test('two workers share one local limit: 3 s of load admitted at the host\'s rate', async () => {
  const up = await backend((_req, res) => res.end('ok'))
  const c = await startCluster(dir(), `routes: [{ name: api, upstream: a, rate_limits: [{ name: host, key: route, rate: "30r/s", burst: 10 }] }]\nupstreams: { a: { endpoints: ["${up.url}"] } }\n`)
  const t0 = performance.now()
  const end = t0 + 3000
  let last = t0
  const admitted: string[] = []
  let limited = 0
  let other = 0
  await Promise.all(Array.from({ length: 4 }, async (_, i) => {
    let next = t0 + i * 6
    await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())))
    while (next < end) {
      last = Math.max(last, performance.now())
      const a = await getFresh(`${c.origin}/x`).catch(() => ({ status: 0, headers: {} as Record<string, string> }))
      if (a.status === 200) admitted.push(String(a.headers['x-request-id']))
      else if (a.status === 429) limited++
      else other++
      next += 25
      const wait = next - performance.now()
      if (wait > 0) await new Promise((r) => setTimeout(r, wait))
    }
  }))
  const seconds = (last - t0) / 1000
  assert.equal(other, 0, 'every request was answered 200 or 429')
  const lines = await logLinesOf(c, admitted)
  const perWorker = new Map<number, number>()
  for (const l of lines) perWorker.set(l.worker ?? 0, (perWorker.get(l.worker ?? 0) ?? 0) + 1)
  assert.deepEqual([...perWorker.keys()].sort(), [1, 2], `both workers admitted requests (${JSON.stringify([...perWorker])})`)
  const ratio = assertAccuracy(admitted.length, 30, 10, seconds, 'two workers, one local 30r/s limit')
  console.log(`# two workers, local 30r/s burst 10: ${admitted.length} admitted (${JSON.stringify([...perWorker])}), ${limited} refused in ${seconds.toFixed(2)} s: ${(ratio * 100).toFixed(1)} % of rate × time + burst + 1`)
})

// Health fed by another process (a cluster worker's pools): facts go out only when they
// matter to outlier detection, verdicts come in and are applied, nothing runs locally.
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { configSchema } from '../../src/config/schema.ts'
import { fedHealth, type HealthFeed, type PoolVerdicts } from '../../src/upstream/health/index.ts'
import { UpstreamPool } from '../../src/upstream/pool.ts'
import { oneUpstream } from '../helpers/gateway.ts'

function fedPool(): { pool: UpstreamPool; reports: unknown[][]; publish: (v: PoolVerdicts) => void; subscribed: () => number } {
  const reports: unknown[][] = []
  const applies = new Set<(v: PoolVerdicts) => void>()
  const feed: HealthFeed = {
    report: (...args) => { reports.push(args) },
    subscribe: (_upstream, apply) => {
      applies.add(apply)
      return () => { applies.delete(apply) }
    },
  }
  const config = configSchema.parse(oneUpstream(['http://127.0.0.1:1', 'http://127.0.0.1:2'], {
    health_check: { path: '/healthz', interval: '10ms' },
  })).upstreams.default
  const pool = new UpstreamPool('default', config, { health: fedHealth(feed) })
  after(() => pool.close())
  return { pool, reports, publish: (v) => { for (const a of applies) a(v) }, subscribed: () => applies.size }
}

test('no local checks or outlier counting; only failures, 5xx and the first answer after them are reported', () => {
  const { pool, reports } = fedPool()
  assert.equal(pool.health.active, null, 'the health check configured runs elsewhere')
  assert.equal(pool.health.outlier, null)
  const [a, b] = pool.endpoints
  pool.report(a, null, 200)
  pool.report(a, null, 404)
  assert.deepEqual(reports, [], 'steady success costs no message')
  pool.report(a, 'connection_refused', null)
  pool.report(b, null, 503)
  pool.report(a, null, 200)
  pool.report(a, null, 200)
  pool.report(b, null, 200)
  assert.deepEqual(reports, [
    ['default', '127.0.0.1:1', 'connection_refused', null],
    ['default', '127.0.0.1:2', null, 503],
    ['default', '127.0.0.1:1', null, 200],
    ['default', '127.0.0.1:2', null, 200],
  ])
})

test('verdicts are applied to the endpoints by label; a closed pool stops listening', async () => {
  const { pool, publish, subscribed } = fedPool()
  const [a, b] = pool.endpoints
  const until = Date.now() + 60_000
  publish({
    '127.0.0.1:1': { healthy: false, ejectedUntil: 0, ejections: 0, downReason: 'connection_refused', downDetail: 'health check: refused' },
    '127.0.0.1:2': { healthy: true, ejectedUntil: until, ejections: 1, downReason: 'http_response_timeout', downDetail: '1 consecutive failed tries' },
  })
  assert.equal(a.isAvailable(Date.now()), false)
  assert.equal(a.downReason, 'connection_refused')
  assert.equal(b.isAvailable(Date.now()), false)
  assert.equal(b.ejectedUntil, until)
  assert.equal(b.ejections, 1)
  assert.equal(pool.select(null), null, 'nothing to select while both are out')
  publish({ '127.0.0.1:1': { healthy: true, ejectedUntil: 0, ejections: 0, downReason: null, downDetail: null } })
  assert.equal(pool.select(null), a)
  await pool.close()
  assert.equal(subscribed(), 0)
})

/**
 * Active health checks on loopback: state flips after exactly the thresholds, failures
 * carry the RFC 9209 type a request would have got, transitions are logged once, checks
 * are spread by jitter, and stopping leaves no timer or socket behind.
 */
import assert from 'node:assert/strict'
import { describe, mock, test } from 'node:test'
import { startLab } from '../../src/lab/index.ts'
import { logger } from '../../src/lib/logger.ts'
import { jitterMs } from '../../src/upstream/health/index.ts'
import { testEnv, waitFor } from '../helpers/gateway.ts'
import { watchedPool } from './health-helpers.ts'

const env = testEnv()

/** Fast checks: 100 ms apart, no jitter, so probe counts are exact. */
const FAST = { interval: '100ms', timeout: '150ms', jitter: '0ms', healthy_threshold: 2, unhealthy_threshold: 3 } as const
/** Outlier detection off, so only active checks move endpoints. */
const NO_OUTLIERS = { consecutive_failures: 0 } as const

describe('active health checks', () => {
  test('HTTP: down after exactly unhealthy_threshold failing checks, up after exactly healthy_threshold passing ones', async () => {
    let status = 503
    const seen: Array<{ url?: string; host?: string; connection?: string }> = []
    const url = await env.upstream((req, res) => {
      seen.push({ url: req.url, host: req.headers.host, connection: req.headers.connection })
      res.writeHead(status).end()
    })
    const { pool, of, transitions } = watchedPool(env, [url], { health_check: { ...FAST, path: '/healthz', host: 'app.internal' }, outlier_detection: NO_OUTLIERS })
    const ep = pool.endpoints[0]
    await waitFor('3 probes', () => (of(ep).length >= 3 ? true : undefined))
    assert.deepEqual(of(ep).slice(0, 3).map((p) => p.healthyAfter), [true, true, false])
    assert.equal(ep.downReason, 'destination_unavailable')
    assert.equal(ep.downDetail, 'unexpected status 503')
    assert.equal(ep.isAvailable(Date.now()), false)

    status = 204
    const before = of(ep).length
    await waitFor('2 passing probes', () => (of(ep).length >= before + 2 ? true : undefined))
    const after = of(ep).slice(before)
    assert.ok(after[0].result.ok)
    assert.deepEqual(after.slice(0, 2).map((p) => p.healthyAfter), [false, true])
    assert.equal(ep.downReason, null)
    assert.equal(ep.downDetail, null)
    assert.deepEqual(transitions.map((t) => [t.state, t.reason]), [['down', 'unexpected status 503'], ['up', null]])
    assert.deepEqual(seen[0], { url: '/healthz', host: 'app.internal', connection: 'close' })
  })

  test('expected_status ranges and lists decide what passes', async () => {
    const url = await env.upstream((_req, res) => res.writeHead(302).end())
    const passing = watchedPool(env, [url], { health_check: { ...FAST, unhealthy_threshold: 1, expected_status: [204, '300-302'] }, outlier_detection: NO_OUTLIERS })
    const failing = watchedPool(env, [url], { health_check: { ...FAST, unhealthy_threshold: 1, expected_status: '200-299' }, outlier_detection: NO_OUTLIERS })
    await waitFor('probes', () => (passing.probes.length >= 2 && failing.probes.length >= 2 ? true : undefined))
    assert.ok(passing.probes.every((p) => p.result.ok && p.healthyAfter))
    assert.ok(failing.probes.every((p) => !p.result.ok && !p.healthyAfter))
  })

  test('TCP: a closed port goes down as connection_refused and comes back when it listens again', async () => {
    const lab = await startLab('ok')
    const port = lab.port
    const { pool, of, transitions } = watchedPool(env, [lab.url], { health_check: { ...FAST, type: 'tcp' }, outlier_detection: NO_OUTLIERS })
    const ep = pool.endpoints[0]
    await waitFor('a passing probe', () => (of(ep).length >= 1 ? true : undefined))
    assert.ok(of(ep)[0].result.ok)
    assert.equal(lab.requests, 0, 'a TCP check sends no request')
    await lab.close()
    const closedAt = of(ep).length
    await waitFor('endpoint down', () => (ep.healthy ? undefined : true))
    const failing = of(ep).slice(closedAt)
    // A probe that was running while the port closed may be the first failure; either way exactly 3.
    assert.equal(failing.filter((p) => !p.result.ok).length, 3)
    assert.equal(ep.downReason, 'connection_refused')

    const again = await env.lab('ok', { port })
    const upFrom = of(ep).length
    await waitFor('endpoint up', () => (ep.healthy ? true : undefined))
    assert.equal(of(ep).length - upFrom, 2, 'healthy_threshold passing probes')
    assert.equal(again.requests, 0)
    assert.deepEqual(transitions.map((t) => t.state), ['down', 'up'])
  })

  test('failures carry the RFC 9209 type a request would have got', async () => {
    const labs = {
      connection_refused: await env.lab('refuse'),
      connection_timeout: await env.lab('connect-timeout'),
      http_response_timeout: await env.lab('hang'),
      connection_terminated: await env.lab('reset-before-header'),
      http_protocol_error: await env.lab('garbage'),
    }
    const urls = Object.values(labs).map((l) => l.url)
    const { pool } = watchedPool(env, urls, { health_check: { ...FAST, unhealthy_threshold: 1 }, outlier_detection: NO_OUTLIERS })
    await waitFor('every endpoint down', () => (pool.endpoints.every((e) => !e.healthy) ? true : undefined))
    assert.deepEqual(pool.endpoints.map((e) => e.downReason), Object.keys(labs))
    for (const e of pool.endpoints) assert.ok(e.downDetail, `${e.label} has a detail`)
  })

  test('each transition is logged once, with endpoint, upstream, state and reason', async () => {
    const warn = mock.method(logger, 'warn')
    const info = mock.method(logger, 'info')
    env.defer(() => { warn.mock.restore(); info.mock.restore() })
    const dead = await env.lab('refuse')
    const { pool, of } = watchedPool(env, [dead.url], { health_check: { ...FAST, unhealthy_threshold: 2 }, outlier_detection: NO_OUTLIERS })
    const ep = pool.endpoints[0]
    await waitFor('6 probes', () => (of(ep).length >= 6 ? true : undefined))
    const downs = warn.mock.calls.filter((c) => (c.arguments[0] as { endpoint?: string }).endpoint === ep.label)
    assert.equal(downs.length, 1, 'logged once although every probe failed')
    assert.deepEqual(downs[0].arguments[0], { upstream: 'default', endpoint: ep.label, state: 'down', reason: 'connection_refused', detail: ep.downDetail })
    assert.equal(info.mock.calls.length, 0)
  })

  test('jitter: the extra wait is a share of the interval or a duration, and spreads first checks', async () => {
    assert.equal(jitterMs({ interval: 1000, jitter: { unit: '%', value: 10 } }, () => 0.5), 50)
    assert.equal(jitterMs({ interval: 1000, jitter: { unit: 'ms', value: 300 } }, () => 1), 300)
    assert.equal(jitterMs({ interval: 1000, jitter: { unit: '%', value: 10 } }, () => 0), 0)

    const starts: number[] = []
    const url = await env.upstream((_req, res) => {
      starts.push(performance.now())
      res.end()
    })
    // Ten endpoints, the same address: without jitter they would all be probed at once.
    watchedPool(env, Array(10).fill(url), { health_check: { interval: '1s', jitter: '200ms' }, outlier_detection: NO_OUTLIERS })
    await waitFor('10 first probes', () => (starts.length >= 10 ? true : undefined))
    const spread = Math.max(...starts) - Math.min(...starts)
    assert.ok(spread > 40, `first checks spread over ${spread.toFixed(1)}ms`)
    assert.ok(spread < 400, `first checks within the jitter (${spread.toFixed(1)}ms)`)
  })

  test('closing the pool stops every timer and probe socket', async () => {
    const hang = await env.lab('hang')
    const sockets = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length
    const baseline = sockets()
    const { pool } = watchedPool(env, [hang.url, hang.url], { health_check: { interval: '50ms', timeout: '1s', jitter: '0ms' } })
    const active = pool.health.active!
    await waitFor('probes in flight', () => (hang.connections >= 2 ? true : undefined))
    assert.ok(active.activeHandles >= 2)
    await pool.close()
    assert.equal(active.activeHandles, 0)
    await waitFor('probe sockets gone on both sides', () => (sockets() <= baseline ? true : undefined), 1000)
    const connections = hang.connections
    await new Promise((r) => setTimeout(r, 200))
    assert.equal(hang.connections, connections, 'no probe after close')
  })
})

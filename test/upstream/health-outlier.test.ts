/**
 * Outlier ejection and panic: consecutive failed tries eject an endpoint, the ejection
 * grows with repeats and respects max_ejection_percent, the endpoint returns when its
 * time is up, and panic_threshold decides between 503 and trying every endpoint.
 */
import assert from 'node:assert/strict'
import { describe, mock, test } from 'node:test'
import { logger } from '../../src/lib/logger.ts'
import { header, send } from '../helpers/client.ts'
import { endpointOf, expectExchange } from '../helpers/expect.ts'
import { FAST_TIMEOUTS, oneUpstream, testEnv, waitFor } from '../helpers/gateway.ts'
import { watchedPool } from './health-helpers.ts'

const env = testEnv()
const URLS = ['http://127.0.0.1:1', 'http://127.0.0.1:2', 'http://127.0.0.1:3', 'http://127.0.0.1:4']

describe('outlier detection', () => {
  test('consecutive failed tries eject an endpoint; later requests skip it', async () => {
    const warn = mock.method(logger, 'warn')
    env.defer(() => warn.mock.restore())
    const dead = await env.lab('refuse')
    const ok = await env.lab('ok')
    const gw = await env.gateway(oneUpstream([dead.url, ok.url], {
      timeouts: FAST_TIMEOUTS,
      retries: { attempts: 2 },
      outlier_detection: { consecutive_failures: 3, base_ejection_time: '10s' },
    }))
    const pool = gw.gateway.runtime.pools.get('default')!
    const deadEp = pool.endpoints[0]
    let sent = 0
    while (deadEp.ejections === 0) {
      assert.ok(sent++ < 20, 'ejected within 20 requests')
      const reply = await send(gw.port)
      await expectExchange(gw, reply, { status: 200, error: null, endpoint: endpointOf(ok.url) })
    }
    const failedTries = gw.records.filter((r) => r.attempts === 2).length
    assert.equal(failedTries, 3, 'ejected at the third failed try')
    assert.equal(deadEp.downReason, 'connection_refused')
    assert.ok(deadEp.ejectedUntil > Date.now() + 9000)
    const snap = deadEp.snapshot()
    assert.equal(snap.available, false)
    assert.equal(snap.ejections, 1)
    assert.equal(snap.lastError?.type, 'connection_refused')
    for (let i = 0; i < 5; i++) {
      await expectExchange(gw, await send(gw.port), { status: 200, error: null, attempts: 1, endpoint: endpointOf(ok.url) })
    }
    const ejections = warn.mock.calls.filter((c) => (c.arguments[0] as { state?: string }).state === 'ejected')
    assert.equal(ejections.length, 1, 'logged once')
    assert.equal((ejections[0].arguments[0] as { endpoint: string }).endpoint, endpointOf(dead.url))
  })

  test('a response resets the count; 5xx counts only when consecutive_5xx is set', async () => {
    const { pool } = watchedPool(env, URLS.slice(0, 2), { outlier_detection: { consecutive_failures: 3, consecutive_5xx: 2 } })
    const [a, b] = pool.endpoints
    pool.report(a, 'connection_refused', null)
    pool.report(a, 'connection_refused', null)
    pool.report(a, null, 200)
    pool.report(a, 'connection_refused', null)
    pool.report(a, 'connection_refused', null)
    assert.equal(a.ejections, 0, 'the 200 reset the count')
    pool.report(b, null, 503)
    pool.report(b, null, 404)
    pool.report(b, null, 502)
    assert.equal(b.ejections, 0, 'the 404 reset the 5xx count')
    pool.report(b, null, 500)
    assert.equal(b.ejections, 1)
    assert.equal(b.downReason, 'destination_unavailable')
    assert.match(b.downDetail ?? '', /2 consecutive 5xx responses, the last 500/)

    const { pool: plain } = watchedPool(env, URLS.slice(0, 2), {})
    for (let i = 0; i < 10; i++) plain.report(plain.endpoints[0], null, 503)
    assert.equal(plain.endpoints[0].ejections, 0, 'consecutive_5xx is off by default')
  })

  test('ejection time grows with each ejection up to max_ejection_time, and the endpoint returns when it is over', async () => {
    const { pool } = watchedPool(env, URLS.slice(0, 2), { outlier_detection: { consecutive_failures: 2, base_ejection_time: '100ms', max_ejection_time: '250ms' } })
    const ep = pool.endpoints[0]
    const durations: number[] = []
    for (let n = 1; n <= 3; n++) {
      const t0 = Date.now()
      pool.report(ep, 'connection_timeout', null)
      pool.report(ep, 'connection_timeout', null)
      assert.equal(ep.ejections, n)
      assert.equal(ep.isAvailable(Date.now()), false)
      assert.equal(ep.downReason, 'connection_timeout')
      durations.push(ep.ejectedUntil - t0)
      await waitFor('return', () => (ep.isAvailable(Date.now()) && ep.downReason === null ? true : undefined), 1000)
    }
    assert.ok(Math.abs(durations[0] - 100) <= 5, `first ${durations[0]}ms`)
    assert.ok(Math.abs(durations[1] - 200) <= 5, `second ${durations[1]}ms`)
    assert.ok(Math.abs(durations[2] - 250) <= 5, `third capped at ${durations[2]}ms`)
  })

  test('max_ejection_percent caps ejections; a pool of two or more may always eject one', async () => {
    const { pool } = watchedPool(env, URLS, { outlier_detection: { consecutive_failures: 1, max_ejection_percent: 50, base_ejection_time: '10s' } })
    for (const e of pool.endpoints) pool.report(e, 'connection_refused', null)
    assert.deepEqual(pool.endpoints.map((e) => e.ejections), [1, 1, 0, 0])
    assert.equal(pool.health.outlier?.maxEjected(), 2)

    const { pool: two } = watchedPool(env, URLS.slice(0, 2), { outlier_detection: { consecutive_failures: 1, max_ejection_percent: 0 } })
    for (const e of two.endpoints) two.report(e, 'connection_refused', null)
    assert.deepEqual(two.endpoints.map((e) => e.ejections), [1, 0])

    const { pool: one } = watchedPool(env, URLS.slice(0, 1), { outlier_detection: { consecutive_failures: 1 } })
    one.report(one.endpoints[0], 'connection_refused', null)
    assert.equal(one.endpoints[0].ejections, 0, 'the only endpoint is never ejected at 50%')
  })

  test('a passing active check that started after the ejection ends it early', async () => {
    const ok = await env.lab('ok')
    const { pool, of } = watchedPool(env, [ok.url, ok.url], {
      health_check: { path: '/healthz', interval: '100ms', timeout: '100ms', jitter: '0ms' },
      outlier_detection: { consecutive_failures: 1, base_ejection_time: '30s' },
    })
    const ep = pool.endpoints[0]
    await waitFor('a first probe', () => (of(ep).length >= 1 ? true : undefined))
    pool.report(ep, 'connection_terminated', null)
    assert.equal(ep.isAvailable(Date.now()), false)
    const ejectedAt = Date.now()
    await waitFor('return', () => (ep.isAvailable(Date.now()) ? true : undefined), 1000)
    assert.ok(Date.now() - ejectedAt < 400, 'back within a few intervals, not 30s')
    assert.equal(ep.downReason, null)
    assert.equal(ep.ejections, 1)
  })
})

describe('panic threshold', () => {
  /** Two endpoints that serve requests but fail their health check path, so both are marked down. */
  async function markedDown(panic: number) {
    const a = await env.lab('ok')
    const b = await env.lab('ok')
    const gw = await env.gateway(oneUpstream([a.url, b.url], {
      timeouts: FAST_TIMEOUTS,
      health_check: { path: '/status/503', interval: '100ms', timeout: '100ms', unhealthy_threshold: 1 },
      panic_threshold: panic,
    }))
    const pool = gw.gateway.runtime.pools.get('default')!
    await waitFor('both endpoints down', () => (pool.endpoints.every((e) => !e.healthy) ? true : undefined))
    return { gw, a, b }
  }

  test('off (0): a pool with every endpoint down answers 503 destination_unavailable with Retry-After', async () => {
    const { gw, a, b } = await markedDown(0)
    const served = a.requests + b.requests
    const reply = await send(gw.port)
    await expectExchange(gw, reply, { status: 503, error: 'destination_unavailable', attempts: 0, endpoint: null })
    assert.ok(Number(header(reply, 'retry-after')) > 0, 'Retry-After')
    assert.equal(a.requests + b.requests, served, 'no request reached an endpoint')
  })

  test('on: below the threshold every endpoint is tried as if healthy', async () => {
    const { gw, a, b } = await markedDown(50)
    for (let i = 0; i < 4; i++) await expectExchange(gw, await send(gw.port), { status: 200, error: null, attempts: 1 })
    const seen = new Set(gw.records.map((r) => r.endpoint))
    assert.deepEqual([...seen].sort(), [endpointOf(a.url), endpointOf(b.url)].sort())
  })
})

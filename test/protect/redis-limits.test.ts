/**
 * `scope: redis` rate limits against a real redis-server (Debian package) started by the
 * test on a free loopback port: the admitted rate within ±10 % over 3 s of load; two
 * gateways sharing one limit (a fleet); Redis killed mid-load → every request still
 * answered (fail open), counted and no request failed; a frozen Redis costs at most
 * `redis.timeout`; `on_store_error: deny` answers 429.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { ConfigInput } from '../../src/config/schema.ts'
import { testEnv } from '../helpers/gateway.ts'
import { metricValue, sendFrom } from '../helpers/from.ts'
import { assertAccuracy, expectLimited, load } from '../helpers/limits.ts'
import { freePort, REDIS_SERVER, startRedis } from '../helpers/redis.ts'

const env = testEnv()
const skip = REDIS_SERVER === null ? 'redis-server is not installed (apt-get install redis-server)' : false

function config(upstream: string, redisUrl: string, limit: Record<string, unknown>, timeout = '50ms'): ConfigInput {
  return {
    listeners: [{ address: '127.0.0.1:0' }],
    redis: { url: redisUrl, timeout },
    routes: [{ name: 'api', upstream: 'app', rate_limits: [{ name: 'fleet', scope: 'redis', ...limit }] as never }],
    upstreams: { app: { endpoints: [upstream] } },
  }
}

/** Waits until the gateway's Redis connection is up. */
async function connected(gw: { gateway: { runtime: { filters: { redis: { ready: boolean } | null } } } }): Promise<void> {
  const deadline = performance.now() + 5000
  while (!gw.gateway.runtime.filters.redis?.ready) {
    if (performance.now() > deadline) throw new Error('no Redis connection after 5 s')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

test('redis limit: 3 s of load is admitted at the configured rate, within ±10 %', { skip }, async () => {
  const redis = await startRedis((fn) => env.defer(fn))
  const up = await env.upstream((_req, res) => res.end('ok'))
  // A generous timeout: on a loaded test machine a 50 ms command can time out, and a fail-open request would skew the count.
  const gw = await env.gateway(config(up, redis.url, { rate: '40r/s', burst: 10 }, '1s'))
  await connected(gw)
  const r = await load(gw.port, 3, 4, 25)
  assert.equal(r.other, 0)
  const ratio = assertAccuracy(r.ok, 40, 10, r.seconds, 'redis 40r/s burst 10')
  console.log(`# redis limit 40r/s burst 10: ${r.ok} admitted, ${r.limited} refused in ${r.seconds.toFixed(2)} s: ${(ratio * 100).toFixed(1)} % of rate × time + burst + 1; sustained ${((r.ok - 11) / r.seconds).toFixed(1)} r/s`)
  assert.ok(r.sample)
  await expectLimited(gw, r.sample, 'fleet', '"fleet";q=11;w=1')
  const metrics = await gw.gateway.metrics.render()
  assert.equal(metricValue(metrics, 'portico_requests_refused_total', { route: 'api', refusal: 'rate_limited' }), r.limited)
  assert.equal(metricValue(metrics, 'portico_rate_limit_store_errors', { route: 'api', limit: 'fleet' }), 0)
})

test('two gateways on one Redis share one limit', { skip }, async () => {
  const redis = await startRedis((fn) => env.defer(fn))
  const up = await env.upstream((_req, res) => res.end('ok'))
  const a = await env.gateway(config(up, redis.url, { rate: '30r/s', burst: 10 }, '1s'))
  const b = await env.gateway(config(up, redis.url, { rate: '30r/s', burst: 10 }, '1s'))
  await connected(a)
  await connected(b)
  const [ra, rb] = await Promise.all([load(a.port, 3, 2, 25), load(b.port, 3, 2, 25)])
  assert.equal(ra.other + rb.other, 0)
  assert.ok(ra.ok > 10 && rb.ok > 10, `both hosts admitted some (${ra.ok}, ${rb.ok})`)
  const ratio = assertAccuracy(ra.ok + rb.ok, 30, 10, Math.max(ra.seconds, rb.seconds), 'two gateways, one 30r/s limit')
  console.log(`# two gateways on one redis 30r/s burst 10: ${ra.ok} + ${rb.ok} admitted: ${(ratio * 100).toFixed(1)} % of rate × time + burst + 1`)
})

test('Redis killed mid-load: requests go on (fail open), none fails, the failures are counted', { skip }, async () => {
  const redis = await startRedis((fn) => env.defer(fn))
  const up = await env.upstream((_req, res) => res.end('ok'))
  const gw = await env.gateway(config(up, redis.url, { rate: '20r/s', burst: 5 }))
  await connected(gw)
  let killedAt = Infinity
  const loading = load(gw.port, 3, 4, 25)
  await new Promise((resolve) => setTimeout(resolve, 1200))
  killedAt = 1200
  await redis.kill()
  const r = await loading
  assert.equal(r.other, 0, 'no request failed: every answer was 200 or 429')
  const before = r.answers.filter((a) => a.atMs < killedAt)
  const after = r.answers.filter((a) => a.atMs > killedAt + 300)
  assert.ok(before.some((a) => a.status === 429), 'the limit worked while Redis was up')
  assert.ok(after.length > 100, `load went on after the kill (${after.length} answers)`)
  assert.deepEqual([...new Set(after.map((a) => a.status))], [200], 'fail open: all admitted once Redis is gone')
  const metrics = await gw.gateway.metrics.render()
  assert.ok(metricValue(metrics, 'portico_rate_limit_store_errors', { route: 'api', limit: 'fleet' }) >= after.length, 'each request without Redis is counted')
  console.log(`# redis killed at ${killedAt} ms: ${before.length} answers before, ${after.length} after (all 200), 0 failed`)
})

test('a frozen Redis costs each request at most redis.timeout; on_store_error deny answers 429', { skip }, async () => {
  const redis = await startRedis((fn) => env.defer(fn))
  const up = await env.upstream((_req, res) => res.end('ok'))
  const open = await env.gateway(config(up, redis.url, { rate: '100r/s' }, '100ms'))
  const closed = await env.gateway(config(up, redis.url, { rate: '100r/s', on_store_error: 'deny' }, '100ms'))
  await connected(open)
  await connected(closed)
  assert.equal((await sendFrom(open.port)).status, 200)
  redis.freeze()
  try {
    const t0 = performance.now()
    const [a, b] = await Promise.all([sendFrom(open.port), sendFrom(closed.port)])
    const ms = performance.now() - t0
    assert.equal(a.status, 200, 'fail open')
    assert.equal(b.status, 429, 'fail closed')
    assert.equal(b.headers['retry-after'], '1')
    const rec = await closed.record(String(b.headers['x-request-id']))
    assert.match(rec.details ?? '', /^rate_limited: rate limit fleet: the store failed \(.*\); on_store_error is deny$/)
    assert.ok(ms < 1000, `answered in ${ms.toFixed(0)} ms with a 100 ms Redis timeout`)
  } finally {
    redis.thaw()
  }
})

test('Portico starts and serves with Redis down, and limits once Redis comes up', { skip }, async () => {
  const port = await freePort()
  const up = await env.upstream((_req, res) => res.end('ok'))
  const gw = await env.gateway(config(up, `redis://127.0.0.1:${port}`, { rate: '1r/m' }))
  const before = await Promise.all([sendFrom(gw.port), sendFrom(gw.port), sendFrom(gw.port)])
  assert.deepEqual(before.map((r) => r.status), [200, 200, 200], 'no Redis: every request is served (fail open)')
  await startRedis((fn) => env.defer(fn), port)
  await connected(gw)
  const after = [(await sendFrom(gw.port)).status, (await sendFrom(gw.port)).status]
  assert.deepEqual(after, [200, 429], 'once Redis is up the limit holds')
  const metrics = await gw.gateway.metrics.render()
  assert.ok(metricValue(metrics, 'portico_rate_limit_store_errors', { route: 'api', limit: 'fleet' }) >= 3)
})

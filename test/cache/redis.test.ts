// The Redis tier of the cache (cache.store.redis): a real redis-server on a loopback port,
// shared by two gateways; what one stores is a hit on the other; a slow or stopped Redis
// costs no failed request and at most the configured timeout, and the metrics say so.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import CachePolicy from 'http-cache-semantics'
import { createClient } from 'redis'
import { decodeEntry, encodeEntry, TieredStore } from '../../src/cache/redis-store.ts'
import type { StoreEntry } from '../../src/cache/store.ts'
import { cacheView } from '../../src/cache/admin.ts'
import { header, send } from '../helpers/client.ts'
import { cached, countingOrigin } from '../helpers/cache.ts'
import { testEnv, waitFor } from '../helpers/gateway.ts'
import { REDIS_SERVER, startRedis } from '../helpers/redis.ts'

const env = testEnv()

test('an entry round-trips through its Redis form: status, fields, body bytes, policy, time stored', () => {
  const policy = new CachePolicy({ url: '/a', method: 'GET', headers: { host: 'x' } }, { status: 200, headers: { 'cache-control': 'max-age=60', etag: '"e"', vary: 'accept' } }, { shared: true })
  const entry: StoreEntry = {
    variants: [
      { status: 200, headers: { 'content-type': 'text/plain', 'set-cookie': ['a=1', 'b=2'], vary: 'accept' }, body: [Buffer.from('hel'), Buffer.from([0, 255, 10])], bodySize: 6, policy: policy.toObject(), storedAt: 1_700_000_000_123 },
      { status: 301, headers: { location: '/b' }, body: [], bodySize: 0, policy: policy.toObject(), storedAt: 5 },
    ],
  }
  const back = decodeEntry(encodeEntry(entry))
  assert.ok(back !== undefined)
  assert.deepEqual(back.variants.map((v) => ({ ...v, body: Buffer.concat(v.body) })), entry.variants.map((v) => ({ ...v, body: Buffer.concat(v.body) })))
  const restored = CachePolicy.fromObject(back.variants[0].policy)
  assert.equal(restored.maxAge(), 60)
  assert.equal(restored.responseHeaders().etag, '"e"')
  // Not an entry: a miss, not a crash.
  assert.equal(decodeEntry(Buffer.from('garbage')), undefined)
  assert.equal(decodeEntry(encodeEntry(entry).subarray(0, 30)), undefined)
})

test('two gateways share one Redis: stored by one, a hit on the other; Redis slow, then stopped: no failed request, the metrics count it', { skip: REDIS_SERVER === null ? 'redis-server is not installed (apt-get install redis-server)' : false }, async () => {
  const redis = await startRedis((fn) => env.defer(fn))
  const o = await countingOrigin(env, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=300', etag: '"v1"' })
    res.end('shared body')
  })
  const TIMEOUT_MS = 200
  const config = cached(o.url, {}, { cache: { store: { redis: { url: redis.url, timeout: `${TIMEOUT_MS}ms`, key_prefix: 'test:' } } } })
  const a = await env.gateway(config)
  const b = await env.gateway(config)
  const tierOf = (gw: typeof a): TieredStore => {
    const s = gw.gateway.runtime.cache.store
    assert.ok(s instanceof TieredStore)
    return s
  }
  await waitFor('both Redis tiers to connect', () => (tierOf(a).redis.available && tierOf(b).redis.available ? true : undefined), 10_000)
  // Both gateways are one site to clients: the same Host, so the same cache key.
  const get = (port: number, path: string) => send(port, { path, headers: { host: 'shop.example' } })

  const first = await get(a.port, '/shared')
  assert.equal(first.status, 200)
  assert.match(header(first, 'cache-status'), /fwd=uri-miss; fwd-status=200; stored/)
  await waitFor('the entry to reach Redis', () => (tierOf(a).redis.writes >= 1 ? true : undefined))
  const second = await get(b.port, '/shared')
  assert.equal(second.status, 200)
  assert.equal(second.body.toString(), 'shared body')
  assert.match(header(second, 'cache-status'), /^portico; hit; ttl=\d+/)
  assert.equal(o.count('/shared'), 1, 'the origin was asked once for both gateways')
  assert.equal(tierOf(b).redis.hits, 1)
  assert.equal(cacheView(b.gateway.runtime.cache).redis?.available, true)

  // Redis blocked for 2 s: lookups give up after the timeout; the requests are served by the origin.
  const admin = createClient({ url: redis.url })
  await admin.connect()
  void admin.sendCommand(['DEBUG', 'SLEEP', '2']).catch(() => {})
  await new Promise((r) => setTimeout(r, 100))
  const t0 = performance.now()
  const slow = await Promise.all([1, 2, 3].map((i) => get(b.port, `/slow${i}`)))
  const slowMs = performance.now() - t0
  assert.deepEqual(slow.map((r) => r.status), [200, 200, 200])
  assert.ok(slowMs < 1500, `requests took ${slowMs.toFixed(0)} ms with Redis blocked for 2 s (timeout ${TIMEOUT_MS} ms)`)
  assert.ok(tierOf(b).redis.timeouts >= 3, `timeouts counted: ${tierOf(b).redis.timeouts}`)
  await admin.close().catch(() => {})

  // Redis stopped mid-test: every request still answered, from memory or the origin.
  await redis.kill()
  const replies = []
  for (let i = 0; i < 40; i++) replies.push(await get(i % 2 === 0 ? a.port : b.port, i % 4 < 2 ? '/shared' : `/after${i}`))
  assert.deepEqual(replies.filter((r) => r.status !== 200).map((r) => r.status), [], 'no failed request')
  await waitFor('both tiers to see Redis gone', () => (!tierOf(a).redis.available && !tierOf(b).redis.available ? true : undefined), 10_000)
  const text = await b.gateway.metrics.render()
  assert.match(text, /^portico_cache_redis_up 0$/m)
  const timeouts = Number(/^portico_cache_redis_failures_total\{kind="timeout"\} (\d+)$/m.exec(text)?.[1])
  assert.ok(timeouts >= 3, text.split('\n').filter((l) => l.includes('redis')).join('\n'))
  assert.match(text, /^portico_cache_redis_lookups_total\{result="hit"\} 1$/m)
  assert.equal(cacheView(b.gateway.runtime.cache).redis?.available, false)
})

// Cache metrics: requests counted by how the cache answered, and the store's size, in the gateway's Prometheus registry.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { cacheResult } from '../../src/observe/cache-status.ts'
import { header, send } from '../helpers/client.ts'
import { cached, countingOrigin } from '../helpers/cache.ts'
import { testEnv } from '../helpers/gateway.ts'

const env = testEnv()

test('portico_cache_requests_total counts hits, misses, revalidations and bypasses; the store gauges show what it holds', async () => {
  const o = await countingOrigin(env, (req, res) => {
    if (req.method === 'POST') {
      res.writeHead(204)
      res.end()
    } else if (req.headers['if-none-match'] === '"e"') {
      res.writeHead(304, { etag: '"e"', 'cache-control': 'max-age=60' })
      res.end()
    } else {
      res.writeHead(200, { etag: '"e"', 'cache-control': req.url === '/stale' ? 'max-age=0' : 'max-age=60' })
      res.end('0123456789')
    }
  })
  const gw = await env.gateway(cached(o.url))
  const expected: Array<[string, string, RegExp]> = [
    ['GET', '/a', /^portico; fwd=uri-miss; fwd-status=200; stored$/],
    ['GET', '/a', /^portico; hit; ttl=\d+$/],
    ['GET', '/a', /^portico; hit; ttl=\d+$/],
    ['GET', '/stale', /^portico; fwd=uri-miss; fwd-status=200; stored$/],
    ['GET', '/stale', /^portico; fwd=stale; fwd-status=304; ttl=60$/],
    ['POST', '/a', /^portico; fwd=method; fwd-status=204$/],
  ]
  for (const [method, path, status] of expected) {
    const r = await send(gw.port, { method, path })
    assert.equal(r.status, method === 'POST' ? 204 : 200)
    assert.match(header(r, 'cache-status'), status)
  }
  await gw.waitForRecords(expected.length)
  const text = await gw.gateway.metrics.render()
  assert.match(text, /^portico_cache_requests_total\{route="default",result="hit"\} 2$/m)
  assert.match(text, /^portico_cache_requests_total\{route="default",result="miss"\} 2$/m)
  assert.match(text, /^portico_cache_requests_total\{route="default",result="revalidated"\} 1$/m)
  assert.match(text, /^portico_cache_requests_total\{route="default",result="bypass"\} 1$/m)
  // The POST invalidated /a: /stale is the one entry left.
  assert.match(text, /^portico_cache_entries 1$/m)
  const bytes = Number(/^portico_cache_stored_bytes (\d+)$/m.exec(text)?.[1])
  assert.equal(bytes, gw.gateway.runtime.cache.store.size)
  assert.ok(bytes > 10, `stored bytes ${bytes}`)
})

test('cacheResult: a stored response served stale is told from one the origin confirmed', () => {
  assert.equal(cacheResult('portico; hit; ttl=3; detail=stale-while-revalidate'), 'stale')
  assert.equal(cacheResult('portico; fwd=stale; detail=connection_refused; ttl=-4'), 'stale')
  assert.equal(cacheResult('portico; fwd=stale; fwd-status=503; ttl=-4'), 'stale')
  assert.equal(cacheResult('portico; fwd=stale; fwd-status=200; ttl=60'), 'revalidated')
  assert.equal(cacheResult('portico; fwd=stale; fwd-status=200; stored'), 'miss')
  assert.equal(cacheResult('portico; fwd=vary-miss; fwd-status=200'), 'miss')
  assert.equal(cacheResult('portico; hit; ttl=0; collapsed'), 'hit')
  assert.equal(cacheResult('portico;hit'), 'hit')
  assert.equal(cacheResult('portico; fwd=method'), 'bypass')
  assert.equal(cacheResult('portico; fwd=stale; ttl=5; detail'), 'stale')
  assert.equal(cacheResult('portico'), 'miss')
})

// Validation: a 304 or a 200 to HEAD freshens the stored response (RFC 9111 §4.3.3-§4.3.5), and the cache answers conditional requests itself (§4.3.2).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { header, send } from '../helpers/client.ts'
import { cached, countingOrigin } from '../helpers/cache.ts'
import { testEnv } from '../helpers/gateway.ts'

const env = testEnv()

/**
 * A gateway before an origin that answers the cache's `If-None-Match: "a"` (or `W/"a"`) with a 304
 * carrying `notModified`, and other requests with a 200 carrying `full` and `v<n>`; the
 * first request stores the 200.
 *
 * @returns the origin, the gateway and the reply to the second request (the revalidation)
 */
async function revalidated(notModified: Record<string, string>, full: Record<string, string>) {
  const o = await countingOrigin(env, (req, res, n) => {
    const match = /^(W\/)?"a"$/.test(req.headers['if-none-match'] ?? '')
    res.writeHead(match ? 304 : 200, match ? notModified : { etag: '"a"', 'content-type': 'text/plain', ...full })
    res.end(match ? undefined : `v${n}`)
  })
  const gw = await env.gateway(cached(o.url))
  await send(gw.port, { path: '/r' })
  const reply = await send(gw.port, { path: '/r' })
  return { o, gw, reply }
}

test('a 304 without validators to the cache\'s own conditional request freshens the stored response', async () => {
  const { o, gw, reply: b } = await revalidated({ 'cache-control': 'max-age=60' }, { 'cache-control': 'max-age=0' })
  assert.equal(b.status, 200)
  assert.equal(b.body.toString(), 'v1')
  assert.equal(header(b, 'cache-status'), 'portico; fwd=stale; fwd-status=304; ttl=60')
  assert.equal(header(b, 'cache-control'), 'max-age=60')
  const c = await send(gw.port, { path: '/r' })
  assert.equal(c.status, 200)
  assert.equal(c.body.toString(), 'v1')
  assert.match(header(c, 'cache-status'), /^portico; hit; ttl=(59|60)$/)
  assert.equal(o.count('/r'), 2)
})

test('a 304 with the strong form of a stored weak ETag freshens the stored response', async () => {
  const { reply: b } = await revalidated({ etag: '"a"', 'cache-control': 'max-age=60' }, { etag: 'W/"a"', 'cache-control': 'max-age=0' })
  assert.equal(b.status, 200)
  assert.equal(b.body.toString(), 'v1')
  assert.equal(header(b, 'cache-status'), 'portico; fwd=stale; fwd-status=304; ttl=60')
  assert.equal(header(b, 'etag'), '"a"')
})

test('a 304 with another strong ETag does not freshen the stored response', async () => {
  const o = await countingOrigin(env, (req, res, n) => {
    if (req.headers['if-none-match'] !== undefined) {
      res.writeHead(304, { etag: '"other"', 'cache-control': 'max-age=60' })
      res.end()
      return
    }
    res.writeHead(200, { etag: '"a"', 'cache-control': 'max-age=0' })
    res.end(`v${n}`)
  })
  const gw = await env.gateway(cached(o.url))
  await send(gw.port, { path: '/x' })
  const b = await send(gw.port, { path: '/x' })
  // No ttl: the stored response was not freshened.
  assert.equal(header(b, 'cache-status'), 'portico; fwd=stale; fwd-status=304')
  const c = await send(gw.port, { path: '/x' })
  assert.match(header(c, 'cache-status'), /^portico; fwd=stale/)
  assert.equal(o.count('/x'), 3)
})

test('a 304 replaces the stored fields it carries; the stored Age does not count again', async () => {
  const { reply: b } = await revalidated({ etag: '"a"', 'cache-control': 'max-age=60', 'x-version': '2' },
    { 'cache-control': 'max-age=50', age: '50', 'x-version': '1', 'x-kept': 'yes' })
  assert.equal(b.status, 200)
  assert.equal(b.body.toString(), 'v1')
  assert.equal(header(b, 'cache-status'), 'portico; fwd=stale; fwd-status=304; ttl=60')
  assert.equal(header(b, 'x-version'), '2')
  assert.equal(header(b, 'x-kept'), 'yes')
  assert.equal(header(b, 'age'), '0')
  assert.equal(header(b, 'content-length'), '2')
})

/**
 * A gateway before an origin whose GET answers are stale at once and whose HEAD answers
 * carry `head`; stores `/h` with a GET, then sends a HEAD for it.
 *
 * @returns the origin, the gateway and the reply to the HEAD
 */
async function headAfterGet(head: Record<string, string>) {
  const o = await countingOrigin(env, (req, res) => {
    const isHead = req.method === 'HEAD'
    res.writeHead(200, isHead ? { 'x-version': '2', ...head } : { 'cache-control': 'max-age=0', 'x-version': '1', 'x-stored': 'yes', 'content-type': 'text/plain' })
    res.end(isHead ? undefined : 'hello')
  })
  const gw = await env.gateway(cached(o.url))
  await send(gw.port, { path: '/h' })
  return { o, gw, h: await send(gw.port, { path: '/h', method: 'HEAD' }) }
}

test('a 200 to HEAD freshens the stored GET response and the client gets the updated fields (RFC 9111 §4.3.5)', async () => {
  const { o, gw, h } = await headAfterGet({ 'cache-control': 'max-age=60', 'content-length': '5' })
  assert.equal(h.status, 200)
  assert.equal(h.body.length, 0)
  assert.equal(header(h, 'cache-status'), 'portico; fwd=stale; fwd-status=200; ttl=60')
  assert.equal(header(h, 'x-version'), '2')
  assert.equal(header(h, 'x-stored'), 'yes')
  assert.equal(header(h, 'content-length'), '5')
  const g = await send(gw.port, { path: '/h' })
  assert.equal(g.status, 200)
  assert.equal(g.body.toString(), 'hello')
  assert.match(header(g, 'cache-status'), /^portico; hit/)
  assert.equal(header(g, 'x-version'), '2')
  assert.deepEqual(o.methods, ['GET', 'HEAD'])
})

test('a 200 to HEAD with another Content-Length leaves the stored response as it was', async () => {
  const { o, gw, h } = await headAfterGet({ 'cache-control': 'max-age=60', 'content-length': '99' })
  assert.equal(h.status, 200)
  assert.equal(header(h, 'cache-status'), 'portico; fwd=stale; fwd-status=200')
  assert.equal(header(h, 'x-stored'), '')
  const g = await send(gw.port, { path: '/h' })
  assert.equal(g.status, 200)
  assert.match(header(g, 'cache-status'), /^portico; fwd=stale; fwd-status=200; stored$/)
  assert.deepEqual(o.methods, ['GET', 'HEAD', 'GET'])
})

test('If-Modified-Since is answered from the store by the Date of a response without Last-Modified', async () => {
  const date = new Date(Date.now() - 10_000).toUTCString()
  const o = await countingOrigin(env, (_req, res) => {
    res.writeHead(200, { 'cache-control': 'max-age=60', date })
    res.end('dated')
  })
  const gw = await env.gateway(cached(o.url))
  await send(gw.port, { path: '/d' })
  const later = await send(gw.port, { path: '/d', headers: { 'if-modified-since': new Date().toUTCString() } })
  assert.equal(later.status, 304)
  assert.equal(later.body.length, 0)
  assert.match(header(later, 'cache-status'), /^portico; hit/)
  const earlier = await send(gw.port, { path: '/d', headers: { 'if-modified-since': new Date(Date.now() - 60_000).toUTCString() } })
  assert.equal(earlier.status, 200)
  assert.equal(earlier.body.toString(), 'dated')
  assert.match(header(earlier, 'cache-status'), /^portico; hit/)
  assert.equal(o.count('/d'), 1)
})

// Byte ranges served from a stored complete response (RFC 9110 §14, RFC 9111 §3.4): one range becomes a 206 from the store; other range requests get the whole response.
import assert from 'node:assert/strict'
import type http from 'node:http'
import { test } from 'node:test'
import { sliceBody } from '../../src/cache/range.ts'
import { header, send } from '../helpers/client.ts'
import { cached, countingOrigin } from '../helpers/cache.ts'
import { testEnv } from '../helpers/gateway.ts'

const env = testEnv()

const BODY = '0123456789A'

/** A gateway whose store holds `/r` (BODY, ETag "v1", in three chunks). */
async function storedBody() {
  const o = await countingOrigin(env, (_req, res) => {
    res.writeHead(200, { 'cache-control': 'max-age=60', etag: '"v1"', 'content-type': 'text/plain', 'x-stored': 'yes' })
    res.write(BODY.slice(0, 4))
    res.write(BODY.slice(4, 8))
    res.end(BODY.slice(8))
  })
  const gw = await env.gateway(cached(o.url))
  const first = await send(gw.port, { path: '/r' })
  assert.equal(first.body.toString(), BODY)
  return { o, gw }
}

for (const [range, text] of [['bytes=0-1', '01'], ['bytes=3-9', '3456789'], ['bytes=1-', '123456789A'], ['bytes=-1', 'A'], ['bytes=5-100', '56789A']] as const) {
  test(`Range: ${range} is a 206 from the store`, async () => {
    const { o, gw } = await storedBody()
    const r = await send(gw.port, { path: '/r', headers: { range } })
    assert.equal(r.status, 206)
    assert.equal(r.body.toString(), text)
    assert.match(header(r, 'cache-status'), /^portico; hit; ttl=\d+$/)
    const start = BODY.indexOf(text)
    assert.equal(header(r, 'content-range'), `bytes ${start}-${start + text.length - 1}/${BODY.length}`)
    assert.equal(header(r, 'content-length'), String(text.length))
    assert.equal(header(r, 'x-stored'), 'yes')
    assert.equal(o.count('/r'), 1)
  })
}

const whole: Array<[string, http.OutgoingHttpHeaders]> = [
  ['several ranges', { range: 'bytes=0-1,3-4' }],
  ['a range past the end', { range: 'bytes=20-' }],
  ['another unit', { range: 'items=0-1' }],
  ['If-Range with another ETag', { range: 'bytes=0-1', 'if-range': '"v0"' }],
  ['If-Range with a weak ETag', { range: 'bytes=0-1', 'if-range': 'W/"v1"' }],
]
for (const [what, headers] of whole) {
  test(`a range request with ${what} gets the whole stored response`, async () => {
    const { o, gw } = await storedBody()
    const r = await send(gw.port, { path: '/r', headers })
    assert.equal(r.status, 200)
    assert.equal(r.body.toString(), BODY)
    assert.match(header(r, 'cache-status'), /^portico; hit/)
    assert.equal(header(r, 'content-range'), '')
    assert.equal(o.count('/r'), 1)
  })
}

test('If-Range with the stored strong ETag gets the range', async () => {
  const { gw } = await storedBody()
  const r = await send(gw.port, { path: '/r', headers: { range: 'bytes=2-3', 'if-range': '"v1"' } })
  assert.equal(r.status, 206)
  assert.equal(r.body.toString(), '23')
  assert.match(header(r, 'cache-status'), /^portico; hit/)
})

test('HEAD with Range gets the whole response head', async () => {
  const { gw } = await storedBody()
  const r = await send(gw.port, { path: '/r', method: 'HEAD', headers: { range: 'bytes=0-1' } })
  assert.equal(r.status, 200)
  assert.equal(r.body.length, 0)
  assert.equal(header(r, 'content-length'), String(BODY.length))
  assert.match(header(r, 'cache-status'), /^portico; hit/)
})

test('sliceBody takes a range across chunk boundaries', () => {
  const chunks = ['0123', '4567', '89A'].map((s) => Buffer.from(s))
  const text = (start: number, end: number) => Buffer.concat(sliceBody(chunks, start, end)).toString()
  assert.equal(text(2, 9), '23456789')
  assert.equal(text(4, 7), '4567')
  assert.equal(text(10, 10), 'A')
  assert.equal(text(0, 10), BODY)
})

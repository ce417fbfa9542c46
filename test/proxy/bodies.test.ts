/**
 * Bodies and message framing through the gateway: Content-Length and chunked request
 * bodies, HEAD, Expect: 100-continue, trailers, and 103 Early Hints.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import http from 'node:http'
import { Readable } from 'node:stream'
import { describe, test } from 'node:test'
import { header, send } from '../helpers/client.ts'
import { expectExchange } from '../helpers/expect.ts'
import { oneUpstream, testEnv } from '../helpers/gateway.ts'

const env = testEnv()

async function okGateway() {
  const lab = await env.lab('ok')
  return env.gateway(oneUpstream([lab.url]))
}

describe('request bodies', () => {
  test('a Content-Length body is echoed unchanged, with the same framing', async () => {
    const gw = await okGateway()
    const body = randomBytes(300_000)
    const reply = await send(gw.port, { method: 'POST', path: '/echo', body })
    await expectExchange(gw, reply, { status: 200, error: null, attempts: 1 })
    assert.equal(header(reply, 'content-length'), String(body.length))
    assert.ok(reply.body.equals(body))
  })

  test('a chunked body is echoed unchanged', async () => {
    const gw = await okGateway()
    const parts = Array.from({ length: 20 }, (_, i) => randomBytes(1000 * (i + 1)))
    const reply = await send(gw.port, { method: 'PUT', path: '/echo', body: Readable.from(parts) })
    await expectExchange(gw, reply, { status: 200, error: null, attempts: 1 })
    assert.equal(header(reply, 'transfer-encoding'), 'chunked')
    assert.ok(reply.body.equals(Buffer.concat(parts)))
  })

  test('an empty Content-Length body', async () => {
    const gw = await okGateway()
    const reply = await send(gw.port, { method: 'POST', path: '/echo', body: Buffer.alloc(0) })
    await expectExchange(gw, reply, { status: 200, error: null })
    assert.equal(reply.body.length, 0)
  })

  test('Expect: 100-continue: the client gets 100, then sends its body, which arrives intact', async () => {
    const gw = await okGateway()
    const body = randomBytes(50_000)
    const got = await new Promise<{ continued: boolean; status: number; headers: http.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
      let continued = false
      const req = http.request({
        host: '127.0.0.1', port: gw.port, method: 'POST', path: '/echo', agent: false,
        headers: { expect: '100-continue', 'content-length': body.length },
      }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => resolve({ continued, status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      })
      req.on('continue', () => {
        continued = true
        req.end(body)
      })
      req.on('error', reject)
      req.setTimeout(5000, () => req.destroy(new Error('no 100 Continue and no response within 5 s')))
    })
    assert.ok(got.continued, 'no 100 Continue before the body')
    assert.equal(got.status, 200)
    assert.ok(got.body.equals(body))
    const r = await gw.record(String(got.headers['x-request-id']))
    assert.equal(r.status, 200)
    assert.equal(r.error, null)
  })
})

describe('responses', () => {
  test('HEAD: the head of the GET, no body', async () => {
    const gw = await okGateway()
    const reply = await send(gw.port, { method: 'HEAD', path: '/bytes/12345' })
    const r = await expectExchange(gw, reply, { status: 200, error: null, attempts: 1 })
    assert.equal(header(reply, 'content-length'), '12345')
    assert.equal(reply.body.length, 0)
    assert.equal(reply.error, undefined)
    assert.equal(r.bytes_sent, 0)
  })

  test('HEAD of a proxy-generated error: headers, no body', async () => {
    const lab = await env.lab('refuse')
    const gw = await env.gateway(oneUpstream([lab.url], { retries: { attempts: 1 } }))
    const reply = await send(gw.port, { method: 'HEAD' })
    await expectExchange(gw, reply, { status: 502, error: 'connection_refused' })
    assert.equal(reply.body.length, 0)
  })

  test('a Content-Length response is relayed byte for byte and counted in bytes_sent', async () => {
    const gw = await okGateway()
    const reply = await send(gw.port, { path: '/bytes/200000' })
    const r = await expectExchange(gw, reply, { status: 200, error: null })
    assert.equal(reply.body.length, 200_000)
    assert.equal(r.bytes_sent, 200_000)
  })

  test('trailers reach the client', async () => {
    const gw = await okGateway()
    const reply = await send(gw.port, { path: '/trailers' })
    await expectExchange(gw, reply, { status: 200, error: null })
    const text = reply.body.toString('utf8')
    assert.equal(text, 'first chunk\nsecond chunk\nthird chunk\n')
    assert.equal(header(reply, 'transfer-encoding'), 'chunked')
    assert.equal(reply.trailers['x-checksum'], createHash('sha256').update(text).digest('hex'))
  })

  test('103 Early Hints are forwarded before the final response', async () => {
    const gw = await okGateway()
    const reply = await send(gw.port, { path: '/early-hints' })
    await expectExchange(gw, reply, { status: 200, error: null })
    const hints = reply.informational.filter((i) => i.status === 103)
    assert.equal(hints.length, 1, `interim responses: ${JSON.stringify(reply.informational)}`)
    assert.equal(hints[0].headers.link, '</style.css>; rel=preload; as=style')
  })
})

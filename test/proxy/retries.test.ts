/**
 * Retries: a failure before anything was sent goes to another endpoint (body intact);
 * a request whose body was sent is never replayed.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import { describe, test } from 'node:test'
import { send } from '../helpers/client.ts'
import { endpointOf, expectExchange } from '../helpers/expect.ts'
import { FAST_TIMEOUTS, oneUpstream, testEnv } from '../helpers/gateway.ts'

const env = testEnv()

/** A refused endpoint listed first, then a healthy one, two attempts per request. */
async function refusedThenHealthy() {
  const dead = await env.lab('refuse')
  const ok = await env.lab('ok', { name: 'healthy' })
  // Round robin with equal weights picks the first endpoint first: the refused one.
  const gw = await env.gateway(oneUpstream([dead.url, ok.url], { timeouts: FAST_TIMEOUTS, retries: { attempts: 2 } }))
  return { dead, ok, gw }
}

describe('retries', () => {
  test('refused endpoint then a healthy one: 200 after 2 attempts', async () => {
    const { ok, gw } = await refusedThenHealthy()
    const reply = await send(gw.port)
    const r = await expectExchange(gw, reply, { status: 200, error: null, attempts: 2, endpoint: endpointOf(ok.url) })
    assert.equal(reply.json<{ server: string }>().server, 'healthy')
    assert.equal(r.upstream_status, 200)
    assert.equal(ok.requests, 1)
  })

  test('a POST refused before sending is retried and its body arrives intact', async () => {
    const { ok, gw } = await refusedThenHealthy()
    const body = randomBytes(256 * 1024)
    const reply = await send(gw.port, { method: 'POST', path: '/echo', body, headers: { 'content-type': 'application/octet-stream' } })
    await expectExchange(gw, reply, { status: 200, error: null, attempts: 2, endpoint: endpointOf(ok.url) })
    assert.equal(reply.body.length, body.length)
    assert.ok(reply.body.equals(body), 'echoed body differs from the body sent')
  })

  test('a chunked POST refused before sending is retried and its body arrives intact', async () => {
    const { ok, gw } = await refusedThenHealthy()
    const parts = [randomBytes(1000), randomBytes(70_000), randomBytes(3)]
    const reply = await send(gw.port, { method: 'POST', path: '/echo', body: Readable.from(parts) })
    await expectExchange(gw, reply, { status: 200, error: null, attempts: 2, endpoint: endpointOf(ok.url) })
    assert.ok(reply.body.equals(Buffer.concat(parts)), 'echoed body differs from the body sent')
  })

  test('a POST reset before the response header is not retried', async () => {
    const reset = await env.lab('reset-before-header')
    const gw = await env.gateway(oneUpstream([reset.url], { timeouts: FAST_TIMEOUTS, retries: { attempts: 3 } }))
    const reply = await send(gw.port, { method: 'POST', path: '/orders', body: '{"order":1}', headers: { 'content-type': 'application/json' } })
    await expectExchange(gw, reply, { status: 502, error: 'connection_terminated', attempts: 1, endpoint: endpointOf(reset.url) })
    assert.equal(reset.requests, 1)
  })

  test('a POST reset before the response header is not retried on another endpoint either', async () => {
    const reset = await env.lab('reset-before-header')
    const ok = await env.lab('ok')
    const gw = await env.gateway(oneUpstream([reset.url, ok.url], { timeouts: FAST_TIMEOUTS, retries: { attempts: 2 } }))
    const reply = await send(gw.port, { method: 'POST', path: '/echo', body: 'x'.repeat(100) })
    await expectExchange(gw, reply, { status: 502, error: 'connection_terminated', attempts: 1, endpoint: endpointOf(reset.url) })
    assert.equal(reset.requests, 1)
    assert.equal(ok.requests, 0)
  })

  test('a GET reset before the response header on a new connection goes to another endpoint (a crashed endpoint)', async () => {
    const reset = await env.lab('reset-before-header')
    const ok = await env.lab('ok', { name: 'healthy' })
    const gw = await env.gateway(oneUpstream([reset.url, ok.url], { timeouts: FAST_TIMEOUTS, retries: { attempts: 2 } }))
    const reply = await send(gw.port, { path: '/x' })
    await expectExchange(gw, reply, { status: 200, error: null, attempts: 2, endpoint: endpointOf(ok.url) })
    assert.equal(reset.requests, 1)
    assert.equal(ok.requests, 1)
  })

  test('a GET reset before the response header is not retried when retries.on leaves out reset', async () => {
    const reset = await env.lab('reset-before-header')
    const ok = await env.lab('ok')
    const gw = await env.gateway(oneUpstream([reset.url, ok.url], { timeouts: FAST_TIMEOUTS, retries: { attempts: 2, on: ['connect_failure'] } }))
    const reply = await send(gw.port, { path: '/x' })
    await expectExchange(gw, reply, { status: 502, error: 'connection_terminated', attempts: 1, endpoint: endpointOf(reset.url) })
    assert.equal(ok.requests, 0)
  })

  test('every endpoint refused: 502 connection_refused after the configured attempts', async () => {
    const a = await env.lab('refuse')
    const b = await env.lab('refuse')
    const gw = await env.gateway(oneUpstream([a.url, b.url], { timeouts: FAST_TIMEOUTS, retries: { attempts: 2 } }))
    const reply = await send(gw.port)
    await expectExchange(gw, reply, { status: 502, error: 'connection_refused', attempts: 2, endpoint: endpointOf(b.url) })
  })
})

/**
 * What clients get back: the error page (JSON or HTML, masked by default), and on relayed
 * responses Proxy-Status received-status, Via and X-Request-Id.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { header, send } from '../helpers/client.ts'
import { endpointOf, expectExchange, ownProxyStatus } from '../helpers/expect.ts'
import { FAST_TIMEOUTS, oneUpstream, testEnv } from '../helpers/gateway.ts'

const env = testEnv()

/** A gateway in front of a refusing endpoint, with or without exposed details. */
async function refusing(expose: boolean) {
  const lab = await env.lab('refuse')
  const gw = await env.gateway(oneUpstream([lab.url], { timeouts: FAST_TIMEOUTS, retries: { attempts: 1 } }, { expose_error_details: expose }))
  return { lab, gw }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

describe('error page', () => {
  test('JSON when the client accepts application/json', async () => {
    const { gw, lab } = await refusing(false)
    const reply = await send(gw.port, { headers: { accept: 'application/json' } })
    await expectExchange(gw, reply, { status: 502, error: 'connection_refused', endpoint: endpointOf(lab.url) })
    assert.match(header(reply, 'content-type'), /^application\/json/)
    const body = reply.json()
    assert.equal(body.error, 'connection_refused')
    assert.equal(body.request_id, header(reply, 'x-request-id'))
    assert.equal(typeof body.title, 'string')
    assert.ok((body.title as string).length > 0)
    assert.equal(header(reply, 'content-length'), String(reply.body.length))
  })

  test('HTML otherwise, with the request ID and the cause', async () => {
    const { gw } = await refusing(false)
    for (const accept of [undefined, 'text/html,application/json;q=0.9', '*/*']) {
      const reply = await send(gw.port, { headers: accept ? { accept } : {} })
      await expectExchange(gw, reply, { status: 502, error: 'connection_refused' })
      assert.match(header(reply, 'content-type'), /^text\/html/, `Accept: ${accept}`)
      const html = reply.body.toString('utf8')
      assert.match(html, /^<!doctype html>/i)
      assert.ok(html.includes(header(reply, 'x-request-id')), 'request ID missing from the page')
      assert.ok(html.includes('connection_refused'))
    }
  })

  test('no internal address in the body or Proxy-Status by default', async () => {
    const { gw, lab } = await refusing(false)
    for (const accept of ['application/json', 'text/html']) {
      const reply = await send(gw.port, { headers: { accept } })
      await expectExchange(gw, reply, { status: 502, error: 'connection_refused' })
      const seen = reply.body.toString('utf8') + '\n' + header(reply, 'proxy-status')
      assert.ok(!seen.includes(String(lab.port)), `endpoint port leaked: ${seen}`)
      assert.ok(!seen.includes('127.0.0.1'), `endpoint address leaked: ${seen}`)
      assert.ok(!seen.includes('ECONNREFUSED'), `raw error leaked: ${seen}`)
      const own = ownProxyStatus(reply)
      assert.equal(own.details, undefined)
      assert.equal(own['next-hop'], undefined)
    }
  })

  test('with expose_error_details the Proxy-Status carries details and next-hop', async () => {
    const { gw, lab } = await refusing(true)
    const reply = await send(gw.port, { headers: { accept: 'application/json' } })
    await expectExchange(gw, reply, { status: 502, error: 'connection_refused' })
    const own = ownProxyStatus(reply)
    assert.equal(own['next-hop'], endpointOf(lab.url))
    assert.equal(typeof own.details, 'string')
    assert.match(own.details as string, /ECONNREFUSED/)
  })
})

describe('relayed responses', () => {
  test('carry Proxy-Status received-status, Via and a generated X-Request-Id the upstream saw too', async () => {
    const lab = await env.lab('ok')
    const gw = await env.gateway(oneUpstream([lab.url]))
    const reply = await send(gw.port, { path: '/describe' })
    const r = await expectExchange(gw, reply, { status: 200, error: null, endpoint: endpointOf(lab.url), attempts: 1 })
    const id = header(reply, 'x-request-id')
    assert.match(id, UUID)
    assert.equal(header(reply, 'proxy-status'), 'portico; received-status=200')
    assert.equal(header(reply, 'via'), '1.1 portico')
    const seen = reply.json<{ headers: Record<string, string> }>().headers
    assert.equal(seen['x-request-id'], id)
    assert.equal(r.upstream_status, 200)
    assert.equal(typeof r.timings.ttfb_ms, 'number')
    assert.equal(typeof r.timings.connect_ms, 'number')
  })

  test("an upstream's own 502 is relayed with received-status=502 and no error", async () => {
    const lab = await env.lab('ok')
    const gw = await env.gateway(oneUpstream([lab.url]))
    const reply = await send(gw.port, { path: '/status/502' })
    const r = await expectExchange(gw, reply, { status: 502, error: null, endpoint: endpointOf(lab.url), attempts: 1 })
    assert.equal(header(reply, 'proxy-status'), 'portico; received-status=502')
    assert.equal(reply.body.toString(), 'status 502\n')
    assert.equal(r.upstream_status, 502)
  })

  test('the client X-Request-Id is propagated to the upstream, the response and the log', async () => {
    const lab = await env.lab('ok')
    const gw = await env.gateway(oneUpstream([lab.url]))
    const id = 'req-7f3a9c-from-client'
    const reply = await send(gw.port, { headers: { 'x-request-id': id } })
    await expectExchange(gw, reply, { status: 200, error: null })
    assert.equal(header(reply, 'x-request-id'), id)
    assert.equal(reply.json<{ headers: Record<string, string> }>().headers['x-request-id'], id)
  })

  for (const [what, bad] of [['with a space', 'not valid'], ['longer than 200 characters', 'x'.repeat(201)], ['empty', '']] as const) {
    test(`a client X-Request-Id ${what} is replaced by a generated one`, async () => {
      const lab = await env.lab('ok')
      const gw = await env.gateway(oneUpstream([lab.url]))
      const reply = await send(gw.port, { headers: { 'x-request-id': bad } })
      await expectExchange(gw, reply, { status: 200, error: null })
      const id = header(reply, 'x-request-id')
      assert.match(id, UUID)
      assert.equal(reply.json<{ headers: Record<string, string> }>().headers['x-request-id'], id)
    })
  }

  test('an upstream Proxy-Status comes first, Portico\'s member last', async () => {
    const url = await env.upstream((_req, res) => {
      res.writeHead(503, { 'proxy-status': 'inner; error=destination_unavailable', via: '1.1 inner' })
      res.end('busy\n')
    })
    const gw = await env.gateway(oneUpstream([url]))
    const reply = await send(gw.port)
    await expectExchange(gw, reply, { status: 503, error: null })
    assert.equal(header(reply, 'proxy-status'), 'inner; error=destination_unavailable, portico; received-status=503')
    assert.equal(header(reply, 'via'), '1.1 inner, 1.1 portico')
  })
})

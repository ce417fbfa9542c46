/**
 * Header rules of the forwarding step, both ways: hop-by-hop fields (and those named in
 * Connection) removed, X-Forwarded-*, Via, and Host preserved or replaced.
 */
import assert from 'node:assert/strict'
import type { IncomingHttpHeaders } from 'node:http'
import { describe, test } from 'node:test'
import { header, send } from '../helpers/client.ts'
import { endpointOf, expectExchange } from '../helpers/expect.ts'
import { oneUpstream, testEnv } from '../helpers/gateway.ts'

const env = testEnv()

/** The headers the 'ok' lab saw, from its JSON answer. */
function seenUpstream(body: Buffer): IncomingHttpHeaders {
  return (JSON.parse(body.toString('utf8')) as { headers: IncomingHttpHeaders }).headers
}

describe('request headers', () => {
  test('hop-by-hop fields and fields named in Connection do not reach the upstream', async () => {
    const lab = await env.lab('ok')
    const gw = await env.gateway(oneUpstream([lab.url]))
    const reply = await send(gw.port, {
      headers: [
        'Host', 'app.example.com',
        'Connection', 'keep-alive, X-Secret',
        'Keep-Alive', 'timeout=5',
        'TE', 'trailers',
        'Upgrade', 'h2c',
        'Proxy-Connection', 'keep-alive',
        'X-Secret', 'do-not-forward',
        'X-Kept', 'yes',
      ],
    })
    await expectExchange(gw, reply, { status: 200, error: null })
    const seen = seenUpstream(reply.body)
    for (const name of ['keep-alive', 'te', 'upgrade', 'proxy-connection', 'x-secret']) {
      assert.equal(seen[name], undefined, `${name} reached the upstream: ${seen[name]}`)
    }
    // The upstream connection's own Connection header is the client library's business, never the client's tokens.
    assert.doesNotMatch(String(seen.connection ?? ''), /x-secret/i)
    assert.equal(seen['x-kept'], 'yes')
  })

  test('X-Forwarded-For appended, X-Forwarded-Proto and X-Forwarded-Host set, Via added, Host preserved', async () => {
    const lab = await env.lab('ok')
    const gw = await env.gateway(oneUpstream([lab.url]))
    const reply = await send(gw.port, {
      headers: { host: 'app.example.com:8443', 'x-forwarded-for': '203.0.113.7', via: '1.0 edge', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'spoofed.example' },
    })
    await expectExchange(gw, reply, { status: 200, error: null })
    const seen = seenUpstream(reply.body)
    assert.equal(seen['x-forwarded-for'], '203.0.113.7, 127.0.0.1')
    assert.equal(seen['x-forwarded-proto'], 'http')
    assert.equal(seen['x-forwarded-host'], 'app.example.com:8443')
    assert.equal(seen.via, '1.0 edge, 1.1 portico')
    assert.equal(seen.host, 'app.example.com:8443')
  })

  test('several X-Forwarded-For fields are joined in order, then the client address appended', async () => {
    const lab = await env.lab('ok')
    const gw = await env.gateway(oneUpstream([lab.url]))
    const reply = await send(gw.port, { headers: ['Host', 'app.example.com', 'X-Forwarded-For', '203.0.113.7', 'X-Forwarded-For', '198.51.100.2'] })
    await expectExchange(gw, reply, { status: 200, error: null })
    assert.equal(seenUpstream(reply.body)['x-forwarded-for'], '203.0.113.7, 198.51.100.2, 127.0.0.1')
  })

  test('X-Forwarded-For starts with the client address when the client sent none', async () => {
    const lab = await env.lab('ok')
    const gw = await env.gateway(oneUpstream([lab.url]))
    const reply = await send(gw.port)
    const seen = seenUpstream(reply.body)
    assert.equal(seen['x-forwarded-for'], '127.0.0.1')
    assert.equal(seen.via, '1.1 portico')
  })

  test('preserve_host: false sends the endpoint as Host', async () => {
    const lab = await env.lab('ok')
    const gw = await env.gateway({
      listeners: [{ address: '127.0.0.1:0' }],
      routes: [{ upstream: 'app', preserve_host: false }],
      upstreams: { app: { endpoints: [lab.url] } },
    })
    const reply = await send(gw.port, { headers: { host: 'app.example.com' } })
    await expectExchange(gw, reply, { status: 200, error: null })
    const seen = seenUpstream(reply.body)
    assert.equal(seen.host, endpointOf(lab.url))
    assert.equal(seen['x-forwarded-host'], 'app.example.com')
  })
})

describe('response headers', () => {
  test('hop-by-hop fields and fields named in Connection do not reach the client', async () => {
    const url = await env.upstream((_req, res) => {
      res.setHeader('Connection', 'X-Upstream-Secret')
      res.setHeader('Keep-Alive', 'timeout=5')
      res.setHeader('Proxy-Connection', 'keep-alive')
      res.setHeader('Upgrade', 'h2c')
      res.setHeader('TE', 'trailers')
      res.setHeader('X-Upstream-Secret', 'internal')
      res.setHeader('X-App', 'kept')
      res.setHeader('Content-Length', '3')
      res.end('ok\n')
    })
    const gw = await env.gateway(oneUpstream([url]))
    const reply = await send(gw.port)
    await expectExchange(gw, reply, { status: 200, error: null })
    for (const name of ['keep-alive', 'proxy-connection', 'upgrade', 'te', 'x-upstream-secret']) {
      assert.equal(reply.headers[name], undefined, `${name} reached the client: ${reply.headers[name]}`)
    }
    assert.doesNotMatch(header(reply, 'connection'), /x-upstream-secret/i)
    assert.equal(header(reply, 'x-app'), 'kept')
    assert.equal(reply.body.toString(), 'ok\n')
  })
})

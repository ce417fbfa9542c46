/**
 * Each gateway failure cause, reproduced by a lab upstream, seen by the client
 * (status, Proxy-Status, X-Request-Id) and in the access log line together.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import { describe, test } from 'node:test'
import { send } from '../helpers/client.ts'
import { endpointOf, expectExchange } from '../helpers/expect.ts'
import { FAST_TIMEOUTS, oneUpstream, testEnv } from '../helpers/gateway.ts'
import type { FaultMode } from '../../src/lab/index.ts'

const env = testEnv()

/** A gateway in front of one lab upstream of `mode`, small timeouts, no retry. */
async function behind(mode: FaultMode) {
  const lab = await env.lab(mode)
  const gw = await env.gateway(oneUpstream([lab.url], { timeouts: FAST_TIMEOUTS, retries: { attempts: 1 } }))
  return { lab, gw, endpoint: endpointOf(lab.url) }
}

describe('failures before the response header', () => {
  test('refused port: 502 connection_refused', async () => {
    const { gw, endpoint } = await behind('refuse')
    const reply = await send(gw.port)
    const r = await expectExchange(gw, reply, { status: 502, error: 'connection_refused', endpoint, attempts: 1 })
    assert.equal(r.upstream_status, null)
    assert.equal(r.timings.ttfb_ms, null)
  })

  test('full accept backlog: 504 connection_timeout after the connect timeout', async () => {
    const { gw, endpoint } = await behind('connect-timeout')
    const reply = await send(gw.port)
    const r = await expectExchange(gw, reply, { status: 504, error: 'connection_timeout', endpoint, attempts: 1 })
    assert.ok(reply.headMs >= 280 && reply.headMs < 1000, `answered after ${reply.headMs} ms, connect timeout 300 ms`)
    assert.equal(r.timings.connect_ms, null)
  })

  test('unresolvable host (*.invalid): 502 dns_error', async () => {
    const { gw, endpoint } = await behind('dns-invalid')
    assert.match(endpoint, /\.invalid:80$/)
    const reply = await send(gw.port)
    await expectExchange(gw, reply, { status: 502, error: 'dns_error', endpoint, attempts: 1 })
  })

  test('hang before header: 504 http_response_timeout within the first-byte timeout ±100 ms', async () => {
    const { gw, endpoint, lab } = await behind('hang')
    const reply = await send(gw.port)
    const r = await expectExchange(gw, reply, { status: 504, error: 'http_response_timeout', endpoint, attempts: 1 })
    assert.ok(Math.abs(reply.headMs - 300) <= 100, `answered after ${reply.headMs.toFixed(1)} ms, first-byte timeout 300 ms`)
    assert.equal(typeof r.timings.connect_ms, 'number')
    assert.equal(r.timings.ttfb_ms, null)
    assert.equal(lab.requests, 1)
  })

  for (const mode of ['reset-before-header', 'close-before-header'] as const) {
    test(`${mode}: 502 connection_terminated on a new connection`, async () => {
      const { gw, endpoint } = await behind(mode)
      const reply = await send(gw.port)
      const r = await expectExchange(gw, reply, { status: 502, error: 'connection_terminated', endpoint, attempts: 1 })
      assert.equal(r.connection_reused, false)
      assert.match(r.details ?? '', /new connection/)
    })
  }

  test('garbage bytes instead of HTTP: 502 http_protocol_error', async () => {
    const { gw, endpoint } = await behind('garbage')
    await expectExchange(gw, await send(gw.port), { status: 502, error: 'http_protocol_error', endpoint, attempts: 1 })
  })

  test('TLS server behind an http:// endpoint: 502 http_protocol_error', async () => {
    const { gw, endpoint } = await behind('tls')
    await expectExchange(gw, await send(gw.port), { status: 502, error: 'http_protocol_error', endpoint, attempts: 1 })
  })

  test('response header section over the limit: 502 http_response_header_section_size', async () => {
    const { gw, endpoint } = await behind('big-header')
    await expectExchange(gw, await send(gw.port), { status: 502, error: 'http_response_header_section_size', endpoint, attempts: 1 })
  })

  test('no route: 404 destination_not_found, no endpoint tried', async () => {
    const lab = await env.lab('ok')
    const gw = await env.gateway({
      listeners: [{ address: '127.0.0.1:0' }],
      routes: [{ upstream: 'app', match: { host: 'app.example.com' } }],
      upstreams: { app: { endpoints: [lab.url] } },
    })
    const reply = await send(gw.port, { headers: { host: 'other.example.com' } })
    const r = await expectExchange(gw, reply, { status: 404, error: 'destination_not_found', endpoint: null, attempts: 0 })
    assert.equal(r.route, null)
    assert.equal(lab.requests, 0)
  })
})

describe('failures after the response header', () => {
  for (const [mode, error] of [['reset-mid-body', 'http_response_incomplete'], ['idle-mid-body', 'connection_read_timeout']] as const) {
    test(`${mode}: the downstream connection is aborted, logged as ${error}`, async () => {
      const { gw, endpoint } = await behind(mode)
      const reply = await send(gw.port)
      assert.equal(reply.status, 200)
      assert.equal(reply.headers['content-length'], String(1024 * 1024))
      // Never a clean short 200: the body read must fail.
      assert.ok(reply.error, `body read ended cleanly after ${reply.body.length} bytes`)
      assert.ok(reply.body.length < 1024 * 1024)
      const r = await gw.record(String(reply.headers['x-request-id']))
      assert.equal(r.error, error, `details: ${r.details}`)
      assert.equal(r.downstream, 'aborted')
      assert.equal(r.status, 200)
      assert.equal(r.upstream_status, 200)
      assert.equal(r.endpoint, endpoint)
      assert.equal(r.attempts, 1)
      assert.equal(typeof r.timings.ttfb_ms, 'number')
      if (mode === 'idle-mid-body') {
        // The idle timeout (300 ms) runs from the last body byte, which arrives right after the header.
        const idleMs = reply.totalMs - reply.headMs
        assert.ok(idleMs >= 250 && idleMs < 1000, `aborted ${idleMs.toFixed(1)} ms after the header, idle timeout 300 ms`)
      }
    })
  }
})

describe('keep-alive race', () => {
  test('an upstream closing idle connections after 200 ms never shows up as a 502', async () => {
    const lab = await env.lab('keepalive-race', { keepAliveTimeoutMs: 200 })
    const gw = await env.gateway(oneUpstream([lab.url], { timeouts: FAST_TIMEOUTS }))
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    env.defer(() => agent.destroy())
    const statuses: number[] = []
    for (let i = 0; i < 40; i++) {
      const reply = await send(gw.port, { agent, path: `/n/${i}` })
      statuses.push(reply.status)
      assert.equal(reply.status, 200, `request ${i}: ${reply.status} ${reply.error ?? ''} ${reply.headers['proxy-status'] ?? ''}`)
      // The upstream closes 200 ms after its last response: aim at that moment.
      await new Promise((r) => setTimeout(r, 200 + (Math.random() * 40 - 20)))
    }
    const records = await gw.waitForRecords(40)
    assert.equal(records.filter((r) => r.status === 502).length, 0)
    const raced = records.filter((r) => r.attempts === 2)
    const reused = records.filter((r) => r.connection_reused)
    assert.ok(raced.length + reused.length > 0, 'the race window was never hit: no retried and no reused connection')
  })
})

describe('client going away', () => {
  const cases: Array<[what: string, options: http.RequestOptions, sent?: Buffer]> = [
    ['waiting for a slow response', { path: '/delay/2000' }],
    ['mid-upload', { method: 'POST', path: '/echo', headers: { 'content-length': 1_000_000 } }, Buffer.alloc(100_000, 'u')],
  ]
  for (const [what, options, sent] of cases) {
    test(`a client that aborts ${what} is logged as 499 client_closed with no error`, async () => {
      const lab = await env.lab('ok')
      const gw = await env.gateway(oneUpstream([lab.url]))
      const id = `client-gone-${what.replace(/\W+/g, '-')}`
      const req = http.request({ host: '127.0.0.1', port: gw.port, agent: false, ...options, headers: { ...options.headers, 'x-request-id': id } })
      req.on('error', () => {})
      if (sent) req.write(sent)
      else req.end()
      await new Promise((r) => setTimeout(r, 150))
      req.destroy()
      const r = await gw.record(id)
      assert.equal(r.status, 499)
      assert.equal(r.error, null)
      assert.equal(r.downstream, 'client_closed')
      assert.equal(r.endpoint, endpointOf(lab.url))
      // The upstream exchange ends with the client, long before the upstream would have.
      await gw.settled(1000)
    })
  }
})

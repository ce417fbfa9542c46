/**
 * Each gateway failure cause, reproduced by a lab upstream, seen by the client
 * (status, Proxy-Status, X-Request-Id) and in the access log line together.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import { describe, test } from 'node:test'
import { send } from '../helpers/client.ts'
import { endpointOf, expectExchange } from '../helpers/expect.ts'
import { FAST_TIMEOUTS, oneUpstream, testEnv, waitFor } from '../helpers/gateway.ts'
import type { FaultMode } from '../../src/lab/index.ts'
import { attemptStateOf } from '../../src/proxy/attempt.ts'

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

/** An upstream whose every reuse of a connection meets the keep-alive race; see {@link closingOnReuse}. */
interface RacingUpstream {
  url: string
  /** TCP connections accepted so far. */
  connections(): number
  /** Requests that arrived on a connection that had served one already, and were answered by closing it. */
  closedOnReuse(): number
}

/**
 * An upstream that answers the first request of each connection and, when another request
 * arrives on the same connection, closes it without a response: the keep-alive race (the
 * upstream closing an idle connection just as the proxy writes on it) at every reuse, with
 * no timing involved.
 */
async function closingOnReuse(): Promise<RacingUpstream> {
  const served = new WeakSet<object>()
  let closed = 0
  const server = await env.server((req, res) => {
    if (served.has(req.socket)) {
      closed++
      req.socket.destroy()
      return
    }
    served.add(req.socket)
    res.end(`answered ${req.url}`)
  })
  const { port } = server.address() as { port: number }
  let connections = 0
  server.on('connection', () => { connections++ })
  return { url: `http://127.0.0.1:${port}`, connections: () => connections, closedOnReuse: () => closed }
}

describe('keep-alive race', () => {
  test('a pooled connection closed as the request arrives is retried once on a fresh connection: never a 502', async () => {
    const up = await closingOnReuse()
    // One try allowed: only the fresh-connection retry of the race, which retries.attempts does not bound, can save a request.
    const gw = await env.gateway(oneUpstream([up.url], { timeouts: FAST_TIMEOUTS, retries: { attempts: 1 } }))
    const n = 8
    for (let i = 0; i < n; i++) {
      const reply = await send(gw.port, { path: `/n/${i}` })
      await expectExchange(gw, reply, { status: 200, error: null })
      assert.equal(reply.body.toString(), `answered /n/${i}`)
    }
    const records = await gw.waitForRecords(n)
    // Ground truth from the upstream: how many times a request went out on a reused connection and met the race.
    const races = up.closedOnReuse()
    assert.ok(races >= 1, 'no request went out on a reused connection: the race was never hit')
    const retried = records.filter((r) => r.attempts === 2)
    assert.equal(retried.length, races, 'each race was retried once, and only the races')
    for (const r of retried) assert.equal(r.connection_reused, false, `${r.path}: the retry went out on a fresh connection`)
    // One connection for the first request, one more for each retry: the retry never took another pooled connection.
    assert.equal(up.connections(), 1 + races)
    const pool = gw.gateway.runtime.pools.get('default')
    assert.ok(pool)
    assert.deepEqual(attemptStateOf(pool).retry.counts, { another_endpoint: 0, fresh_connection: races, budget_exhausted: 0 }, 'the gateway counted each race as a fresh-connection retry')
  })

  test('without reset retries the race is a 502 connection_terminated that names the reused connection', async () => {
    const up = await closingOnReuse()
    const gw = await env.gateway(oneUpstream([up.url], { timeouts: FAST_TIMEOUTS, retries: { on: ['connect_failure'] } }))
    await expectExchange(gw, await send(gw.port, { path: '/first' }), { status: 200, error: null, attempts: 1 })
    const r = await expectExchange(gw, await send(gw.port, { path: '/second' }), { status: 502, error: 'connection_terminated', attempts: 1 })
    assert.equal(r.connection_reused, true)
    assert.match(r.details ?? '', /reused keep-alive connection/)
    assert.equal(up.closedOnReuse(), 1)
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
      // The client goes away once its request is in the upstream's hands, or, for an upload, while its body is being buffered.
      if (sent) await waitFor('the body to be buffered', () => (gw.gateway.buffers.memory + gw.gateway.buffers.temp > 0 ? true : undefined))
      else await waitFor('the request to reach the upstream', () => (lab.requests === 1 ? true : undefined))
      req.destroy()
      const r = await gw.record(id)
      assert.equal(r.status, 499)
      assert.equal(r.error, null)
      assert.equal(r.downstream, 'client_closed')
      if (sent) {
        // Request buffering reads the body before an endpoint is chosen: nothing reached the upstream.
        assert.equal(r.endpoint, null)
        assert.equal(lab.requests, 0)
      } else {
        assert.equal(r.endpoint, endpointOf(lab.url))
      }
      // The upstream exchange ends with the client, long before the upstream would have.
      await gw.settled(1000)
    })
  }
})

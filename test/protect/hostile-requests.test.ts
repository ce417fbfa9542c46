/**
 * Hostile HTTP/1 requests over raw sockets, beyond the cases of requests.test.ts, with
 * nginx 1.22's answer to each (seen in front of the same backend; this file does not run
 * nginx) in the test names: a missing or malformed Host, a
 * Transfer-Encoding on HTTP/1.0, `*` for a method other than OPTIONS, a fragment in the
 * target, an unknown expectation, an Upgrade on HTTP/1.0, and refusals answered in the turn
 * the parser then fails on the bytes after them. Each asserts the status, Proxy-Status, the
 * access log line and what reached the upstream.
 */
import assert from 'node:assert/strict'
import net from 'node:net'
import { test } from 'node:test'
import { parseProxyStatus } from '../../src/failures/proxy-status.ts'
import { REFUSALS } from '../../src/failures/refusals.ts'
import { recordingUpstream, testEnv, waitFor, type SeenRequest, type TestGateway } from '../helpers/gateway.ts'
import { rawRequest, type RawReply } from '../helpers/raw.ts'

const env = testEnv()

async function setup(): Promise<{ gw: TestGateway; seen: SeenRequest[] }> {
  const { url, seen } = await recordingUpstream(env)
  const gw = await env.gateway({
    listeners: [{ address: '127.0.0.1:0' }],
    routes: [{ name: 'public', match: { path_prefix: '/public' }, upstream: 'app' }, { name: 'other', upstream: 'app' }],
    upstreams: { app: { endpoints: [url] } },
  })
  return { gw, seen }
}

async function expectRefusal(gw: TestGateway, r: RawReply, name: keyof typeof REFUSALS, detail: RegExp): Promise<void> {
  const refusal = REFUSALS[name]
  assert.equal(r.status, refusal.status, r.bytes.toString('latin1').slice(0, 300))
  const own = parseProxyStatus(r.get('proxy-status') ?? '').at(-1)
  assert.equal(own?.params.error, refusal.type)
  assert.equal(own?.params.details, name)
  const rec = await gw.record(r.get('x-request-id') ?? '')
  assert.equal(rec.status, refusal.status)
  assert.equal(rec.error, refusal.type)
  assert.match(rec.details ?? '', new RegExp(`^${name}: ${detail.source}`))
  assert.equal(rec.upstream, null, 'refused before routing')
}

async function expectProxied(gw: TestGateway, r: RawReply): Promise<void> {
  assert.equal(r.status, 200, r.bytes.toString('latin1').slice(0, 300))
  assert.equal(parseProxyStatus(r.get('proxy-status') ?? '').at(-1)?.params['received-status'], 200)
  const rec = await gw.record(r.get('x-request-id') ?? '')
  assert.equal(rec.status, 200)
  assert.equal(rec.error, null)
}

test('HTTP/1.1 without Host: 400 invalid_host with Proxy-Status and a log line (was Node\'s bare 400); HTTP/1.0 without Host is proxied', async () => {
  const { gw, seen } = await setup()
  const r = await rawRequest(gw.port, 'GET /public/ HTTP/1.1\r\n\r\n')
  await expectRefusal(gw, r, 'invalid_host', /an HTTP\/1\.1 request without a Host field/)
  assert.ok(r.closed, 'a malformed request closes the connection')
  assert.equal(seen.length, 0)
  await expectProxied(gw, await rawRequest(gw.port, 'GET /public/ HTTP/1.0\r\n\r\n'))
  assert.equal(seen.length, 1)
})

test('a Host that is not host[:port] (empty, white space, a path, userinfo) is refused, never forwarded (nginx: 400)', async () => {
  const { gw, seen } = await setup()
  for (const host of ['a b/c', 'a.test/x', 'user@a.test', 'a.test:80:80', 'a.test:8o', '', ':80']) {
    const r = await rawRequest(gw.port, `GET /public/ HTTP/1.1\r\nHost: ${host}\r\n\r\n`)
    await expectRefusal(gw, r, 'invalid_host', /Host ".*" is not host\[:port\]/)
  }
  assert.equal(seen.length, 0)
  for (const host of ['a.test', 'A.Test:8080', '[::1]:80', '127.0.0.1']) {
    await expectProxied(gw, await rawRequest(gw.port, `GET /public/ HTTP/1.1\r\nHost: ${host}\r\n\r\n`))
  }
  assert.equal(seen.length, 4)
})

test('Transfer-Encoding on an HTTP/1.0 request: 400 malformed_request, nothing forwarded (RFC 9112 §6.1; nginx: 400)', async () => {
  const { gw, seen } = await setup()
  const r = await rawRequest(gw.port, 'POST /public/ HTTP/1.0\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n')
  await expectRefusal(gw, r, 'malformed_request', /Transfer-Encoding in an HTTP\/1\.0 request/)
  assert.ok(r.closed)
  assert.equal(seen.length, 0)
})

test('"*" is a target for OPTIONS only: GET * gets 400 target_form (nginx: 400), OPTIONS * is proxied', async () => {
  const { gw, seen } = await setup()
  const r = await rawRequest(gw.port, 'GET * HTTP/1.1\r\nHost: a.test\r\n\r\n')
  await expectRefusal(gw, r, 'target_form', /"\*" is a target for OPTIONS only, not GET/)
  assert.equal(seen.length, 0)
  await expectProxied(gw, await rawRequest(gw.port, 'OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n'))
  assert.deepEqual(seen.map((s) => [s.method, s.url]), [['OPTIONS', '*']])
})

test('a fragment in the target is dropped: routing and the upstream both see the path before "#", not one normalised through it', async () => {
  const { gw, seen } = await setup()
  const r = await rawRequest(gw.port, 'GET /public/x#/../../private HTTP/1.1\r\nHost: a.test\r\n\r\n')
  await expectProxied(gw, r)
  const rec = await gw.record(r.get('x-request-id') ?? '')
  assert.equal(rec.route, 'public')
  assert.equal(rec.path, '/public/x#/../../private', 'the log keeps the target as received')
  assert.deepEqual(seen.map((s) => s.url), ['/public/x'])
})

test('an expectation other than 100-continue is ignored, as nginx does, and Expect is not forwarded (was Node\'s bare 417)', async () => {
  const { gw, seen } = await setup()
  const r = await rawRequest(gw.port, 'POST /public/ HTTP/1.1\r\nHost: a.test\r\nExpect: x-foo\r\nContent-Length: 5\r\n\r\nhello')
  await expectProxied(gw, r)
  assert.equal(seen.length, 1)
  assert.equal(seen[0].body, 'hello')
  assert.equal(seen[0].headers.expect, undefined)
})

test('Upgrade in an HTTP/1.0 request is ignored (RFC 9110 §7.8): a plain request upstream, no tunnel', async () => {
  const { gw, seen } = await setup()
  const r = await rawRequest(gw.port, 'GET /public/ws HTTP/1.0\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n')
  await expectProxied(gw, r)
  assert.equal(seen.length, 1)
  assert.equal(seen[0].headers.upgrade, undefined)
  assert.equal(seen[0].headers['x-forwarded-for'], '127.0.0.1', 'routed and forwarded like any request')
})

test('a refusal the parser then fails after reaches the client: Transfer-Encoding: gzip gets its 501 (it got no byte, logged 499)', async () => {
  const { gw, seen } = await setup()
  for (const request of [
    'POST /public/ HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip\r\n\r\nhello',
    'GET /public/ HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: xchunked\r\n\r\n',
  ]) {
    const r = await rawRequest(gw.port, request)
    await expectRefusal(gw, r, 'transfer_coding_not_implemented', /Transfer-Encoding: /)
    assert.ok(r.closed)
  }
  // The same turn: a refused TRACE and bytes that are not HTTP after it.
  const r = await rawRequest(gw.port, 'TRACE /public/ HTTP/1.1\r\nHost: a.test\r\n\r\nGARBAGE\r\n\r\n')
  await expectRefusal(gw, r, 'method_not_allowed', /method TRACE is denied/)
  assert.equal(seen.length, 0)
  assert.ok(gw.records.every((rec) => rec.status !== 499), JSON.stringify(gw.records.map((rec) => rec.status)))
})

test('a field spelling one Portico manages with "_" (X_Real_IP) is dropped: CGI-style servers read it as X-Real-IP (nginx drops every "_" name)', async () => {
  const { gw, seen } = await setup()
  const spoof = 'X_Real_IP: 6.6.6.6\r\nx_forwarded_for: 6.6.6.6\r\nX_Forwarded_Proto: https\r\nTrue_Client_IP: 6.6.6.6\r\nX_Request_Id: forged\r\nTransfer_Encoding: chunked\r\nContent_Length: 99\r\n'
  const r = await rawRequest(gw.port, `GET /public/ HTTP/1.1\r\nHost: a.test\r\n${spoof}X_Custom_Field: kept\r\n\r\n`)
  await expectProxied(gw, r)
  const h = seen[0].headers
  assert.deepEqual(Object.keys(h).filter((k) => k.includes('_')), ['x_custom_field'], 'only the unmanaged "_" field goes on')
  assert.equal(h['x-real-ip'], '127.0.0.1')
  assert.equal(h['x-forwarded-for'], '127.0.0.1')
  assert.equal(h['x-forwarded-proto'], 'http')
})

test('a request line over max_header_size gets 414 uri_too_long (RFC 9112 §3; nginx: 414); a long header field still gets 431', async () => {
  const { gw, seen } = await setup()
  const target = `/public/${'a'.repeat(20_000)}`
  const r = await rawRequest(gw.port, `GET ${target} HTTP/1.1\r\nHost: a.test\r\n\r\n`)
  assert.equal(r.status, 414, r.bytes.toString('latin1').slice(0, 200))
  assert.equal(parseProxyStatus(r.get('proxy-status') ?? '').at(-1)?.params.details, 'uri_too_long')
  const rec = await gw.record(r.get('x-request-id') ?? '')
  assert.equal(rec.status, 414)
  assert.equal(rec.error, 'http_request_error')
  assert.equal(rec.method, 'GET')
  assert.match(rec.details ?? '', /^uri_too_long: HPE_HEADER_OVERFLOW/)
  const h = await rawRequest(gw.port, `GET /public/ HTTP/1.1\r\nHost: a.test\r\nX-Long: ${'a'.repeat(20_000)}\r\n\r\n`)
  assert.equal(h.status, 431)
  assert.equal(parseProxyStatus(h.get('proxy-status') ?? '').at(-1)?.params.details, 'request_header_too_large')
  assert.equal(seen.length, 0)
})

test('a body that breaks the framing (bad chunk size, Content-Length in the trailer) is that request\'s one log line, 400, whether the body is buffered or streamed', async () => {
  const seen: string[] = []
  const url = await env.upstream((req, res) => {
    req.on('data', () => {})
    req.on('error', () => {})
    req.on('end', () => { seen.push(req.url ?? ''); res.end('ok') })
  })
  const gw = await env.gateway({
    listeners: [{ address: '127.0.0.1:0' }],
    routes: [{ name: 'stream', match: { path_prefix: '/stream' }, upstream: 'app', buffering: { request: false } }, { name: 'buffered', upstream: 'app' }],
    upstreams: { app: { endpoints: [url] } },
  })
  const bodies = ['5\r\nhello\r\nzz\r\nx\r\n0\r\n\r\n', '5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n']
  let n = 0
  for (const path of ['/stream/up', '/buffered']) {
    for (const body of bodies) {
      const r = await rawRequest(gw.port, `POST ${path} HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n${body}`)
      n++
      await expectRefusal400(gw, r, path)
      await gw.waitForRecords(n)
    }
  }
  await gw.settled()
  assert.equal(gw.records.length, n, JSON.stringify(gw.records.map((rec) => [rec.path, rec.status])))
  assert.deepEqual(seen.filter((u) => u === '/buffered'), [], 'a buffered body that broke never reached the upstream')
})

async function expectRefusal400(gw: TestGateway, r: RawReply, path: string): Promise<void> {
  assert.equal(r.status, 400, r.bytes.toString('latin1').slice(0, 200))
  assert.equal(parseProxyStatus(r.get('proxy-status') ?? '').at(-1)?.params.details, 'malformed_request')
  assert.ok(r.closed)
  const rec = await gw.record(r.get('x-request-id') ?? '')
  assert.equal(rec.status, 400, `${path}: ${rec.details}`)
  assert.equal(rec.error, 'http_request_error')
  assert.equal(rec.method, 'POST')
  assert.equal(rec.path, path)
  assert.match(rec.details ?? '', /^malformed_request: HPE_/)
}

test('a client that closes its side in the middle of a body is one 499 line, with no 400 answered or logged beside it', async () => {
  const { gw, seen } = await setup()
  const socket = net.connect(gw.port, '127.0.0.1')
  env.defer(() => { socket.destroy() })
  socket.on('error', () => {})
  let answer = ''
  socket.setEncoding('latin1').on('data', (c: string) => { answer += c })
  const closed = new Promise((r) => socket.once('close', r))
  socket.write('POST /public/ HTTP/1.1\r\nHost: a.test\r\nX-Request-Id: half-closed\r\nContent-Length: 100\r\n\r\nhello')
  await waitFor('the body to be buffered', () => (gw.gateway.buffers.memory > 0 ? true : undefined))
  socket.end()
  const rec = await gw.record('half-closed')
  assert.equal(rec.status, 499)
  assert.equal(rec.error, null)
  assert.equal(rec.downstream, 'client_closed')
  await closed
  assert.equal(answer, '', 'nothing answered to a client that left')
  assert.equal(gw.records.length, 1, JSON.stringify(gw.records.map((r) => [r.status, r.details])))
  assert.equal(seen.length, 0)
})

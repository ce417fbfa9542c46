/**
 * Header hygiene over raw sockets: client-sent address fields, X-Request-Id shapes, the
 * upstream's Server field, and 103 Early Hints (invalid ones dropped without failing or
 * repeating the request; none to HTTP/1.0 clients).
 */
import assert from 'node:assert/strict'
import type http from 'node:http'
import net from 'node:net'
import { test } from 'node:test'
import { testEnv, type TestGateway } from '../helpers/gateway.ts'
import { rawRequest } from '../helpers/raw.ts'

const env = testEnv()

async function recordingUpstream(): Promise<{ url: string; seen: http.IncomingHttpHeaders[] }> {
  const seen: http.IncomingHttpHeaders[] = []
  const url = await env.upstream((req, res) => {
    seen.push(req.headers)
    res.setHeader('server', 'internal-app/3.1 (host db-10-0-0-5)')
    res.end('ok')
  })
  return { url, seen }
}

async function gatewayTo(url: string, route: Record<string, unknown> = {}): Promise<TestGateway> {
  return env.gateway({
    listeners: [{ address: '127.0.0.1:0' }],
    routes: [{ name: 'default', upstream: 'app', ...route }],
    upstreams: { app: { endpoints: [url] } },
  })
}

const SPOOFED = 'X-Real-IP: 10.0.0.1\r\nTrue-Client-IP: 10.0.0.2\r\nForwarded: for=10.0.0.3;proto=https\r\nX-Forwarded-For: 10.0.0.4\r\n'

test('client-sent X-Real-IP, True-Client-IP and Forwarded are dropped by default and X-Real-IP is the client address', async () => {
  const up = await recordingUpstream()
  const gw = await gatewayTo(up.url)
  const r = await rawRequest(gw.port, `GET / HTTP/1.1\r\nHost: a.test\r\n${SPOOFED}\r\n`)
  assert.equal(r.status, 200)
  const h = up.seen[0]
  assert.equal(h['x-real-ip'], '127.0.0.1')
  assert.equal(h['true-client-ip'], undefined)
  assert.equal(h.forwarded, undefined)
  // X-Forwarded-For is appended to: its last element is the address Portico saw.
  assert.equal(h['x-forwarded-for'], '10.0.0.4, 127.0.0.1')
})

test('forwarded_headers: pass forwards them unchanged', async () => {
  const up = await recordingUpstream()
  const gw = await gatewayTo(up.url, { forwarded_headers: 'pass' })
  await rawRequest(gw.port, `GET / HTTP/1.1\r\nHost: a.test\r\n${SPOOFED}\r\n`)
  await rawRequest(gw.port, 'GET / HTTP/1.1\r\nHost: a.test\r\n\r\n')
  assert.equal(up.seen[0]['x-real-ip'], '10.0.0.1')
  assert.equal(up.seen[0]['true-client-ip'], '10.0.0.2')
  assert.equal(up.seen[0].forwarded, 'for=10.0.0.3;proto=https')
  assert.equal(up.seen[1]['x-real-ip'], '127.0.0.1', 'set when the client sent none')
})

test('X-Request-Id: a safe token is kept, anything else replaced by a new ID in the response, upstream and log', async () => {
  const up = await recordingUpstream()
  const gw = await gatewayTo(up.url)
  const ok = await rawRequest(gw.port, 'GET / HTTP/1.1\r\nHost: a.test\r\nX-Request-Id: trace-01:ab_C.9\r\n\r\n')
  assert.equal(ok.get('x-request-id'), 'trace-01:ab_C.9')
  assert.equal(up.seen[0]['x-request-id'], 'trace-01:ab_C.9')
  for (const bad of ['<script>alert(1)</script>', 'a b', 'x"y', 'id;drop', 'a'.repeat(129)]) {
    const r = await rawRequest(gw.port, `GET / HTTP/1.1\r\nHost: a.test\r\nX-Request-Id: ${bad}\r\n\r\n`)
    const id = r.get('x-request-id') ?? ''
    assert.match(id, /^[0-9a-f-]{36}$/, `${bad} replaced`)
    assert.equal(up.seen.at(-1)?.['x-request-id'], id)
    assert.equal((await gw.record(id)).request_id, id)
  }
})

test('the upstream Server field is hidden by default and passed with pass_server_header', async () => {
  const up = await recordingUpstream()
  const hidden = await gatewayTo(up.url)
  const r = await rawRequest(hidden.port, 'GET / HTTP/1.1\r\nHost: a.test\r\n\r\n')
  assert.equal(r.status, 200)
  assert.equal(r.get('server'), undefined)
  assert.ok(!r.bytes.toString('latin1').includes('internal-app'))
  const passed = await gatewayTo(up.url, { pass_server_header: true })
  const p = await rawRequest(passed.port, 'GET / HTTP/1.1\r\nHost: a.test\r\n\r\n')
  assert.equal(p.get('server'), 'internal-app/3.1 (host db-10-0-0-5)')
})

/** A raw upstream answering each request head with a 103 carrying `link`, then 200 "ok"; counts request heads. */
async function earlyHintsUpstream(link: string): Promise<{ url: string; requests: () => number }> {
  let requests = 0
  const server = net.createServer((socket) => {
    let buf = ''
    socket.on('data', (c: Buffer) => {
      buf += c.toString('latin1')
      let end: number
      while ((end = buf.indexOf('\r\n\r\n')) >= 0) {
        buf = buf.slice(end + 4)
        requests++
        socket.write(`HTTP/1.1 103 Early Hints\r\nLink: ${link}\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok`)
      }
    })
    socket.on('error', () => {})
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  env.defer(() => new Promise<void>((resolve) => {
    server.close(() => resolve())
  }))
  return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, requests: () => requests }
}

test('a 103 with an invalid Link is dropped: 200, one request upstream, no 502', async () => {
  const up = await earlyHintsUpstream('not a link; rel=preload')
  const gw = await gatewayTo(up.url)
  const r = await rawRequest(gw.port, 'GET / HTTP/1.1\r\nHost: a.test\r\n\r\n')
  assert.equal(r.status, 200)
  assert.equal(r.body.toString(), 'ok')
  assert.equal(r.interim.length, 0)
  assert.equal(up.requests(), 1, 'the GET went upstream exactly once')
  const rec = await gw.record(r.get('x-request-id') ?? '')
  assert.equal(rec.status, 200)
  assert.equal(rec.error, null)
  assert.equal(rec.attempts, 1)
})

test('a valid 103 reaches HTTP/1.1 clients and never HTTP/1.0 ones (RFC 9110 §15.2)', async () => {
  const up = await earlyHintsUpstream('</style.css>; rel=preload; as=style')
  const gw = await gatewayTo(up.url)
  const r11 = await rawRequest(gw.port, 'GET / HTTP/1.1\r\nHost: a.test\r\n\r\n')
  assert.equal(r11.status, 200)
  assert.equal(r11.interim.length, 1)
  assert.equal(r11.interim[0].status, 103)
  assert.deepEqual(r11.interim[0].fields.find(([k]) => k === 'link'), ['link', '</style.css>; rel=preload; as=style'])
  const r10 = await rawRequest(gw.port, 'GET / HTTP/1.0\r\nHost: a.test\r\n\r\n')
  assert.equal(r10.status, 200)
  assert.equal(r10.interim.length, 0)
  assert.ok(!r10.bytes.toString('latin1').includes(' 103 '))
  assert.equal(up.requests(), 2)
})

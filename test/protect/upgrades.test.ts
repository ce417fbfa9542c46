/**
 * The Upgrade allow-list over raw sockets: only the protocols a route allows are tunnelled
 * (WebSocket by default), h2c never, and only on GET; any other upgrade request goes
 * upstream as a plain request with its method and body, without Upgrade.
 */
import assert from 'node:assert/strict'
import type http from 'node:http'
import type { Duplex } from 'node:stream'
import { test } from 'node:test'
import { testEnv, type TestGateway } from '../helpers/gateway.ts'
import { rawRequest } from '../helpers/raw.ts'

const env = testEnv()

interface Seen { method: string; url: string; headers: http.IncomingHttpHeaders; body: string }

/**
 * An upstream that would tunnel anything: every upgrade request gets a 101 (with a
 * revealing Server field) and an echo; plain requests are recorded and answered 200.
 */
async function willingUpstream(): Promise<{ url: string; plain: Seen[]; upgrades: Seen[] }> {
  const plain: Seen[] = []
  const upgrades: Seen[] = []
  const server = await env.server((req, res) => {
    let body = ''
    req.setEncoding('latin1')
    req.on('data', (c: string) => { body += c })
    req.on('end', () => {
      plain.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body })
      res.setHeader('server', 'internal-app/3.1 (host db-10-0-0-5)')
      res.end('plain')
    })
  })
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex) => {
    upgrades.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: '' })
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${req.headers.upgrade}\r\nConnection: Upgrade\r\nServer: internal-app/3.1\r\n\r\n`)
    socket.pipe(socket)
  })
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, plain, upgrades }
}

async function gatewayTo(url: string, route: Record<string, unknown> = {}): Promise<TestGateway> {
  return env.gateway({
    listeners: [{ address: '127.0.0.1:0' }],
    routes: [{ name: 'default', upstream: 'app', ...route }],
    upstreams: { app: { endpoints: [url], timeouts: { response_header: '5s' } } },
  })
}

const WS = 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'

test('h2c is never tunnelled: the request goes as a plain GET with X-Forwarded-For, and the connection closes after it', async () => {
  const up = await willingUpstream()
  const gw = await gatewayTo(up.url)
  // An h2c client sends the HTTP/2 preface right after the 101 it expects; here it must never reach the upstream.
  const r = await rawRequest(gw.port, 'GET /h HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')
  assert.equal(r.status, 200)
  assert.equal(r.body.toString(), 'plain')
  assert.equal(r.get('connection'), 'close')
  assert.ok(r.closed)
  assert.equal(up.upgrades.length, 0)
  assert.equal(up.plain.length, 1)
  const seen = up.plain[0]
  assert.equal(seen.headers.upgrade, undefined)
  assert.equal(seen.headers['http2-settings'], undefined)
  assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1')
  const rec = await gw.record(r.get('x-request-id') ?? '')
  assert.equal(rec.status, 200)
  assert.equal(rec.route, 'default')
})

test('WebSocket is tunnelled by default; the 101 hides the upstream Server field', async () => {
  const up = await willingUpstream()
  const gw = await gatewayTo(up.url)
  const r = await rawRequest(gw.port, `GET /chat HTTP/1.1\r\nHost: a.test\r\n${WS}\r\n`)
  assert.equal(r.status, 101)
  assert.equal(r.get('server'), undefined)
  assert.equal(up.upgrades.length, 1)
  assert.equal(up.upgrades[0].headers['x-forwarded-for'], '127.0.0.1')
})

test('a protocol the route does not list goes as a plain request; a listed one is tunnelled', async () => {
  const up = await willingUpstream()
  const none = await gatewayTo(up.url, { upgrades: [] })
  const r = await rawRequest(none.port, `GET /chat HTTP/1.1\r\nHost: a.test\r\n${WS}\r\n`)
  assert.equal(r.status, 200)
  assert.equal(up.upgrades.length, 0)
  assert.equal(up.plain[0].headers.upgrade, undefined)
  assert.equal(up.plain[0].headers['sec-websocket-key'], 'dGhlIHNhbXBsZSBub25jZQ==', 'end-to-end fields pass')

  const custom = await gatewayTo(up.url, { upgrades: ['websocket', 'x-stream'] })
  const t = await rawRequest(custom.port, 'GET /s HTTP/1.1\r\nHost: a.test\r\nConnection: upgrade\r\nUpgrade: X-Stream\r\n\r\n')
  assert.equal(t.status, 101)
  // Every listed protocol must be allowed: one that is not makes the whole request plain.
  const mixed = await rawRequest(custom.port, 'GET /m HTTP/1.1\r\nHost: a.test\r\nConnection: upgrade\r\nUpgrade: websocket, h2c\r\n\r\n')
  assert.equal(mixed.status, 200)
  assert.deepEqual(up.upgrades.map((u) => u.url), ['/s'])
})

test('a POST with Upgrade goes upstream as a POST with its body, without Upgrade, and is answered at once', async () => {
  const up = await willingUpstream()
  const gw = await gatewayTo(up.url)
  const t0 = performance.now()
  const r = await rawRequest(gw.port, `POST /form HTTP/1.1\r\nHost: a.test\r\n${WS}Content-Length: 5\r\n\r\nhello`)
  assert.equal(r.status, 200)
  assert.ok(performance.now() - t0 < 2000, 'no wait for a timeout')
  assert.equal(up.upgrades.length, 0)
  assert.equal(up.plain.length, 1)
  assert.equal(up.plain[0].method, 'POST')
  assert.equal(up.plain[0].body, 'hello')
  assert.equal(up.plain[0].headers.upgrade, undefined)
  const rec = await gw.record(r.get('x-request-id') ?? '')
  assert.equal(rec.method, 'POST')
  assert.equal(rec.status, 200)
  assert.equal(rec.error, null)
})

test('the schema refuses h2c in upgrades', async () => {
  const up = await willingUpstream()
  await assert.rejects(gatewayTo(up.url, { upgrades: ['h2c'] }), /h2c is never tunnelled/)
})

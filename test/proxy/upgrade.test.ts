/**
 * WebSocket and other HTTP/1.1 upgrades through the gateway: tunnels (echo, subprotocol,
 * permessage-deflate), refused upgrades, connect failures, idle timeout, closing, and
 * the one access log line per upgrade.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import http from 'node:http'
import net from 'node:net'
import { test } from 'node:test'
import { WebSocket, WebSocketServer, type RawData } from 'ws'
import type { Reply } from '../helpers/client.ts'
import { endpointOf, expectExchange, ownProxyStatus } from '../helpers/expect.ts'
import { FAST_TIMEOUTS, oneUpstream, testEnv, waitFor } from '../helpers/gateway.ts'

const env = testEnv()

/** A ws echo upstream on 127.0.0.1:0 (permessage-deflate on; picks the last offered subprotocol). */
async function echoUpstream(): Promise<{ url: string; server: WebSocketServer; sockets: Set<WebSocket>; requests: http.IncomingMessage[] }> {
  const server = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    perMessageDeflate: true,
    handleProtocols: (protocols) => [...protocols].at(-1) ?? false,
  })
  await once(server, 'listening')
  const sockets = new Set<WebSocket>()
  const requests: http.IncomingMessage[] = []
  server.on('connection', (ws, req) => {
    sockets.add(ws)
    requests.push(req)
    ws.on('close', () => sockets.delete(ws))
    ws.on('message', (data: RawData, isBinary: boolean) => ws.send(data, { binary: isBinary }))
  })
  env.defer(() => new Promise<void>((resolve) => {
    for (const ws of server.clients) ws.terminate()
    server.close(() => resolve())
  }))
  return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, server, sockets, requests }
}

/** Opens a WebSocket client through the gateway; closed after the test. */
async function connect(port: number, protocols: string[] = [], path = '/chat'): Promise<{ ws: WebSocket; res: http.IncomingMessage }> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, protocols, { perMessageDeflate: true })
  env.defer(() => { ws.terminate() })
  // ws emits 'upgrade' and 'open' in the same tick: listen for both at once.
  const upgraded = once(ws, 'upgrade') as Promise<[http.IncomingMessage]>
  await Promise.race([once(ws, 'open'), once(ws, 'error').then(([err]) => { throw err })])
  const [res] = await upgraded
  return { ws, res }
}

/** Sends `data` and waits for the next message. */
async function roundTrip(ws: WebSocket, data: string | Buffer): Promise<{ data: Buffer; isBinary: boolean }> {
  const reply = once(ws, 'message') as Promise<[Buffer, boolean]>
  ws.send(data)
  const [d, isBinary] = await reply
  return { data: d, isBinary }
}

/** An upgrade request that is not answered with 101: the plain response, as the test client helpers shape it. */
function refusedUpgrade(port: number, path = '/chat'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const start = performance.now()
    const req = http.request({ host: '127.0.0.1', port, path, agent: false, headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' } })
    req.on('upgrade', (res, socket) => {
      socket.destroy()
      reject(new Error(`unexpected ${res.statusCode} upgrade`))
    })
    req.on('response', (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const body = Buffer.concat(chunks)
        const ms = performance.now() - start
        resolve({ status: res.statusCode ?? 0, headers: res.headers, trailers: {}, informational: [], body, headMs: ms, totalMs: ms, json: () => JSON.parse(body.toString('utf8')) })
      })
    })
    req.on('error', reject)
    req.end()
  })
}

test('echo: text and binary frames, subprotocol and permessage-deflate negotiated end to end', async () => {
  const up = await echoUpstream()
  const gw = await env.gateway(oneUpstream([up.url]))
  const { ws, res } = await connect(gw.port, ['chat.v1', 'chat.v2'])
  assert.equal(ws.protocol, 'chat.v2')
  assert.match(ws.extensions, /permessage-deflate/)
  assert.equal(res.headers['proxy-status'], 'portico; received-status=101')
  const id = res.headers['x-request-id'] as string
  assert.ok(id)
  const text = await roundTrip(ws, 'hello through portico')
  assert.equal(text.isBinary, false)
  assert.equal(text.data.toString('utf8'), 'hello through portico')
  const bytes = Buffer.from([0, 1, 2, 255, 254, 0, 10, 13])
  const bin = await roundTrip(ws, bytes)
  assert.equal(bin.isBinary, true)
  assert.deepEqual(bin.data, bytes)
  const big = 'x'.repeat(200_000)
  assert.equal((await roundTrip(ws, big)).data.toString('utf8'), big)

  const seen = up.requests[0]
  assert.equal(seen.headers['x-request-id'], id)
  assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1')
  assert.equal(seen.headers['x-forwarded-proto'], 'http')
  assert.equal(seen.headers['x-forwarded-host'], `127.0.0.1:${gw.port}`)
  assert.match(String(seen.headers.via), /1\.1 portico$/)
  assert.equal(seen.headers['sec-websocket-protocol'], 'chat.v1,chat.v2')
  assert.match(String(seen.headers['sec-websocket-extensions']), /permessage-deflate/)
  assert.equal(gw.records.length, 0, 'no log line while the tunnel is open')

  ws.close()
  await once(ws, 'close')
  const r = await gw.record(id)
  assert.equal(r.status, 101)
  assert.equal(r.upstream_status, 101)
  assert.equal(r.error, null)
  assert.equal(r.route, 'default')
  assert.equal(r.endpoint, endpointOf(up.url))
  assert.equal(r.attempts, 1)
  assert.ok(r.bytes_sent > 0, `bytes_sent ${r.bytes_sent}`)
  assert.equal(typeof r.timings.ttfb_ms, 'number')
  await new Promise((resolve) => setTimeout(resolve, 50))
  assert.equal(gw.records.filter((x) => x.request_id === id).length, 1, 'one access log line per tunnel')
})

test('upstream answers 403 to the upgrade: 502 http_upgrade_failed with the status in details', async () => {
  const url = await env.upstream((_req, res) => { res.writeHead(200).end('plain') })
  // A plain HTTP server that refuses every upgrade with 403.
  const server = http.createServer()
  server.on('upgrade', (_req, socket: net.Socket) => {
    socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 6\r\nconnection: close\r\n\r\nno ws\n')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  env.defer(() => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections() }))
  const refusing = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`
  const gw = await env.gateway(oneUpstream([refusing], { retries: { attempts: 2 } }, { expose_error_details: true }))
  const reply = await refusedUpgrade(gw.port)
  const r = await expectExchange(gw, reply, { status: 502, error: 'http_upgrade_failed', endpoint: endpointOf(refusing), attempts: 1 })
  assert.equal(r.upstream_status, 403)
  assert.equal(r.details, 'upstream answered 403 instead of 101')
  assert.match(String(ownProxyStatus(reply).details), /403 instead of 101/)
  assert.ok(!reply.body.includes('no ws'), 'the upstream body is not relayed')
  assert.ok(url)

  // A server with no upgrade handling answers 200: refused too.
  const gw2 = await env.gateway(oneUpstream([url]))
  const reply2 = await refusedUpgrade(gw2.port)
  const r2 = await expectExchange(gw2, reply2, { status: 502, error: 'http_upgrade_failed', attempts: 1 })
  assert.equal(r2.details, 'upstream answered 200 instead of 101')
})

test('refused port: 502 connection_refused; retried on another endpoint when there is one', async () => {
  const dead = await env.lab('refuse')
  const gw = await env.gateway(oneUpstream([dead.url], { timeouts: FAST_TIMEOUTS, retries: { attempts: 1 } }))
  const reply = await refusedUpgrade(gw.port)
  await expectExchange(gw, reply, { status: 502, error: 'connection_refused', endpoint: endpointOf(dead.url), attempts: 1 })

  const up = await echoUpstream()
  const gw2 = await env.gateway(oneUpstream([dead.url, up.url], { load_balancing: 'round_robin', timeouts: FAST_TIMEOUTS, retries: { attempts: 2 } }))
  for (let i = 0; i < 2; i++) {
    const { ws, res } = await connect(gw2.port)
    assert.equal((await roundTrip(ws, 'again')).data.toString(), 'again')
    ws.close()
    await once(ws, 'close')
    const r = await gw2.record(res.headers['x-request-id'] as string)
    assert.equal(r.status, 101)
    assert.equal(r.endpoint, endpointOf(up.url))
  }
  assert.ok(gw2.records.some((r) => r.attempts === 2), 'one upgrade went to the dead endpoint first')
})

test('no route: 404 destination_not_found on the raw connection', async () => {
  const up = await echoUpstream()
  const gw = await env.gateway({
    listeners: [{ address: '127.0.0.1:0' }],
    routes: [{ name: 'ws', match: { path_prefix: '/ws' }, upstream: 'default' }],
    upstreams: { default: { endpoints: [up.url] } },
  })
  const reply = await refusedUpgrade(gw.port, '/elsewhere')
  await expectExchange(gw, reply, { status: 404, error: 'destination_not_found', endpoint: null, attempts: 0 })
  const { ws } = await connect(gw.port, [], '/ws/room')
  assert.equal((await roundTrip(ws, 'routed')).data.toString(), 'routed')
})

test('idle timeout closes both sides of the tunnel', async () => {
  const up = await echoUpstream()
  const gw = await env.gateway(oneUpstream([up.url], { timeouts: { idle: '300ms' } }))
  const { ws, res } = await connect(gw.port)
  const start = performance.now()
  // Traffic keeps the tunnel open past the idle timeout.
  for (let i = 0; i < 4; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    await roundTrip(ws, `tick ${i}`)
  }
  assert.equal(ws.readyState, WebSocket.OPEN)
  const [code] = await once(ws, 'close') as [number]
  const elapsed = performance.now() - start
  assert.equal(code, 1006, 'closed without a close frame')
  assert.ok(elapsed >= 650 && elapsed < 2000, `closed after ${elapsed.toFixed(0)} ms`)
  await waitFor('upstream side closed', () => (up.sockets.size === 0 ? true : undefined))
  const r = await gw.record(res.headers['x-request-id'] as string)
  assert.equal(r.status, 101)
  assert.match(String(r.details), /300ms without traffic/)
})

test('closing one side closes the other', async () => {
  const up = await echoUpstream()
  const gw = await env.gateway(oneUpstream([up.url]))
  // The client closes (close handshake, then TCP close): the upstream side goes too.
  const a = await connect(gw.port)
  await roundTrip(a.ws, 'one')
  a.ws.close(1000, 'bye')
  await once(a.ws, 'close')
  await waitFor('upstream closed after the client', () => (up.sockets.size === 0 ? true : undefined))
  const ra = await gw.record(a.res.headers['x-request-id'] as string)
  assert.equal(ra.status, 101)

  // The upstream drops its connection: the client sees the tunnel close.
  const b = await connect(gw.port)
  await roundTrip(b.ws, 'two')
  const closed = once(b.ws, 'close')
  for (const s of up.sockets) s.terminate()
  const [code] = await closed as [number]
  assert.equal(code, 1006)
  const rb = await gw.record(b.res.headers['x-request-id'] as string)
  assert.equal(rb.details, 'tunnel closed by the upstream')
  assert.equal(gw.records.length, 2, 'one line per tunnel')
})

test('Gateway.stop() closes open tunnels and leaves no socket behind', async () => {
  const up = await echoUpstream()
  const gw = await env.gateway(oneUpstream([up.url]))
  const clients = await Promise.all([connect(gw.port), connect(gw.port)])
  for (const c of clients) await roundTrip(c.ws, 'before stop')
  assert.equal(up.sockets.size, 2)
  const closes = clients.map((c) => once(c.ws, 'close'))
  await gw.gateway.stop(100)
  await Promise.all(closes)
  await waitFor('upstream sockets closed', () => (up.sockets.size === 0 ? true : undefined))
  assert.equal(gw.records.length, 2)
  for (const r of gw.records) assert.equal(r.status, 101)
})

/**
 * The one attempt loop, as plain requests, upgrades and cache refreshes all use it: the
 * keep-alive race retry counted, the retry budget, the pending bound and queue timeout for
 * upgrades, cache refreshes reported to outlier detection, refusals of the request itself
 * kept away from outlier detection, and the client body timeout (`body_idle`).
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import http from 'node:http'
import net from 'node:net'
import { test } from 'node:test'
import { WebSocketServer } from 'ws'
import { header, send } from '../helpers/client.ts'
import { cached } from '../helpers/cache.ts'
import { ownProxyStatus } from '../helpers/expect.ts'
import { oneUpstream, testEnv, waitFor } from '../helpers/gateway.ts'
import { attemptStateOf } from '../../src/proxy/attempt.ts'
import { configSchema } from '../../src/config/schema.ts'
import type { TestGateway } from '../helpers/gateway.ts'

const env = testEnv()

/** A raw TCP server on 127.0.0.1:0, closed after the test. */
async function rawServer(onConnection: (socket: net.Socket, index: number) => void): Promise<{ url: string; connections: () => number }> {
  let n = 0
  const sockets = new Set<net.Socket>()
  const server = net.createServer((s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => {})
    onConnection(s, n++)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  env.defer(() => new Promise<void>((r) => {
    for (const s of sockets) s.destroy()
    server.close(() => r())
  }))
  return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, connections: () => n }
}

/** Reads from `s` until a whole response head arrived (or the connection closed); resolves with what was read. */
function readHead(s: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    let data = ''
    const done = () => {
      s.removeListener('data', onData)
      resolve(data)
    }
    const onData = (chunk: Buffer) => {
      data += chunk.toString('latin1')
      if (data.includes('\r\n\r\n')) done()
    }
    s.on('data', onData)
    s.once('close', done)
    s.on('error', () => {})
  })
}

/** Sends a raw HTTP/1.1 upgrade request; resolves with the status and the response head. */
async function rawUpgrade(port: number, id: string): Promise<{ status: number; head: string; socket: net.Socket }> {
  const s = net.connect(port, '127.0.0.1')
  env.defer(() => { s.destroy() })
  s.write(`GET /chat HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Request-Id: ${id}\r\n\r\n`)
  const data = await readHead(s)
  const head = data.slice(0, data.indexOf('\r\n\r\n'))
  return { status: Number(head.split(' ')[1]), head, socket: s }
}

function poolOf(gw: TestGateway) {
  return gw.gateway.runtime.pools.get('default')!
}

test('keep-alive race: a reused connection closed under the request is retried once on a fresh connection, and counted', async () => {
  // Connection 0 answers its first request with keep-alive, then closes as the second request arrives:
  // the race, made deterministic. Every later connection answers normally.
  const up = await rawServer((s, index) => {
    let requests = 0
    s.on('data', (d: Buffer) => {
      if (!d.includes('\r\n\r\n')) return
      requests++
      if (index === 0 && requests === 2) {
        s.destroy()
        return
      }
      s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok')
    })
  })
  const gw = await env.gateway(oneUpstream([up.url], { retries: { attempts: 1 } }, { admin: { address: '127.0.0.1:0' } }))
  assert.equal((await send(gw.port, { path: '/1' })).status, 200)
  const second = await send(gw.port, { path: '/2' })
  assert.equal(second.status, 200, `${second.status} ${header(second, 'proxy-status')}`)
  const rec = await gw.record(header(second, 'x-request-id'))
  assert.equal(rec.attempts, 2)
  assert.equal(rec.error, null)
  assert.equal(up.connections(), 2, 'the retry went on a new connection')
  assert.deepEqual(attemptStateOf(poolOf(gw)).retry.counts, { another_endpoint: 0, fresh_connection: 1, budget_exhausted: 0 })
  const admin = gw.gateway.admin!.address!.port
  const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text()
  assert.match(metrics, /portico_upstream_retries\{upstream="default",kind="fresh_connection"\} 1/)
  const view = await (await fetch(`http://127.0.0.1:${admin}/upstreams`)).json() as { upstreams: Array<{ retries: Record<string, number> }> }
  assert.equal(view.upstreams[0].retries.fresh_connection, 1)
})

test('an upgrade whose first endpoint refuses is retried without retry budget: nothing was sent', async () => {
  const refused = await env.lab('refuse')
  const ws = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  await once(ws, 'listening')
  env.defer(() => new Promise<void>((r) => { for (const c of ws.clients) c.terminate(); ws.close(() => r()) }))
  const ok = `http://127.0.0.1:${(ws.address() as net.AddressInfo).port}`
  // Round robin picks the refusing endpoint first; a budget of 0 refuses every retry that adds load.
  const gw = await env.gateway(oneUpstream([refused.url, ok], {
    retries: { attempts: 2, budget: { ratio: 0, min_concurrency: 0 } },
    outlier_detection: { consecutive_failures: 100 },
  }))
  const r = await rawUpgrade(gw.port, 'upgrade-no-budget')
  assert.equal(r.status, 101, r.head)
  assert.match(r.head, /proxy-status: portico; received-status=101/i)
  // The line of an upgrade is written when its tunnel closes.
  r.socket.destroy()
  const rec = await gw.record('upgrade-no-budget')
  assert.equal(rec.attempts, 2)
  assert.equal(attemptStateOf(poolOf(gw)).retry.counts.another_endpoint, 1)
})

test('upgrades honour limits.max_pending: 503 connection_limit_reached', async () => {
  const lab = await env.lab('ok')
  const gw = await env.gateway(oneUpstream([lab.url], { limits: { max_pending: 0 } }))
  const r = await rawUpgrade(gw.port, 'upgrade-pending')
  assert.equal(r.status, 503, r.head)
  assert.match(r.head, /proxy-status: portico; error=connection_limit_reached/i)
  const rec = await gw.record('upgrade-pending')
  assert.equal(rec.error, 'connection_limit_reached')
  assert.equal(rec.status, 503)
})

test('a queued upgrade is bounded by the queue timeout: 503 connection_limit_reached, not a wait without end', async () => {
  const hang = await env.lab('hang')
  const gw = await env.gateway(oneUpstream([hang.url], {
    limits: { max_connections: 1, queue_timeout: '200ms' },
    timeouts: { connect: '1s', response_header: '10s', idle: '10s' },
    retries: { attempts: 1 },
  }))
  // The first upgrade takes the one connection and waits for an answer that never comes.
  void rawUpgrade(gw.port, 'upgrade-holding')
  await waitFor('the first upgrade to hold the connection', () => (poolOf(gw).endpoints[0].inFlight === 1 ? true : undefined))
  const started = performance.now()
  const r = await rawUpgrade(gw.port, 'upgrade-queued')
  const took = performance.now() - started
  assert.equal(r.status, 503, r.head)
  assert.match(r.head, /proxy-status: portico; error=connection_limit_reached/i)
  assert.ok(took < 3000, `answered after ${took} ms`)
  const rec = await gw.record('upgrade-queued')
  assert.equal(rec.error, 'connection_limit_reached')
})

test('a background cache refresh goes through the attempt loop: its failure reaches outlier detection', async () => {
  let failing = false
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'cache-control': 'max-age=0, stale-while-revalidate=60' })
    res.end('v1')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  env.defer(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()) }))
  const url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`
  const input = cached(url)
  input.upstreams.default = { ...input.upstreams.default, outlier_detection: { consecutive_failures: 1, base_ejection_time: '30s', max_ejection_percent: 100 } }
  const gw = await env.gateway(input)
  assert.equal((await send(gw.port, { path: '/r' })).status, 200)
  failing = true
  server.closeAllConnections()
  await new Promise<void>((r) => server.close(() => r()))
  // Stale within stale-while-revalidate: served from the store, refreshed in the background.
  const stale = await send(gw.port, { path: '/r' })
  assert.equal(stale.status, 200)
  assert.equal(stale.body.toString(), 'v1')
  assert.ok(failing)
  const ep = poolOf(gw).endpoints[0]
  await waitFor('the refresh failure to eject the endpoint', () => (ep.ejectedUntil > Date.now() ? true : undefined))
  assert.equal(ep.lastError?.type, 'connection_refused')
})

test('a request body over the limit is not the endpoint\'s failure: no outlier ejection', async () => {
  const lab = await env.lab('ok')
  const gw = await env.gateway(oneUpstream([lab.url], { outlier_detection: { consecutive_failures: 1, base_ejection_time: '30s', max_ejection_percent: 100 } }, {
    listeners: [{ address: '127.0.0.1:0', max_request_body_size: '1KiB' }],
  }))
  // Chunked: the limit is found while streaming, after the try started.
  const r = await new Promise<{ status: number; proxyStatus: string; id: string }>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: gw.port, method: 'POST', path: '/echo', headers: { 'transfer-encoding': 'chunked', 'x-request-id': 'big-body' } }, (res) => {
      res.resume()
      resolve({ status: res.statusCode ?? 0, proxyStatus: String(res.headers['proxy-status']), id: String(res.headers['x-request-id']) })
    })
    req.on('error', reject)
    req.end(Buffer.alloc(8192, 'b'))
  })
  assert.equal(r.status, 413)
  assert.match(r.proxyStatus, /error=http_request_denied/)
  const rec = await gw.record('big-body')
  assert.equal(rec.status, 413)
  const ep = poolOf(gw).endpoints[0]
  assert.equal(ep.ejectedUntil > Date.now(), false, 'the endpoint was ejected for a client\'s body')
  assert.equal(ep.lastError, null)
  assert.equal((await send(gw.port, { path: '/after' })).status, 200)
})

test('listeners[].timeouts.body_idle: a client silent mid-body gets 408 http_request_error, logged, and the endpoint is not blamed', async () => {
  // An application that answers once it has the whole body.
  const url = await env.upstream((req, res) => {
    req.resume()
    req.on('end', () => res.end('got it'))
  })
  const gw = await env.gateway(oneUpstream([url], {
    timeouts: { connect: '1s', response_header: '5s', idle: '200ms' },
    outlier_detection: { consecutive_failures: 1, base_ejection_time: '30s', max_ejection_percent: 100 },
  }, {
    listeners: [{ address: '127.0.0.1:0', timeouts: { body_idle: '400ms' } }],
  }))
  const s = net.connect(gw.port, '127.0.0.1')
  env.defer(() => { s.destroy() })
  const started = performance.now()
  s.write('POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\nX-Request-Id: silent-body\r\n\r\n0123456789')
  const data = await readHead(s)
  const took = performance.now() - started
  assert.match(data, /^HTTP\/1\.1 408 /)
  const ps = ownProxyStatus({ headers: { 'proxy-status': /proxy-status: (.*)\r\n/i.exec(data)?.[1] ?? '' } })
  assert.equal(ps.error, 'http_request_error')
  // The upstream idle timeout (200 ms) did not fire while the body waited on the client.
  assert.ok(took >= 350, `answered after ${took} ms, before body_idle`)
  const rec = await gw.record('silent-body')
  assert.equal(rec.status, 408)
  assert.equal(rec.error, 'http_request_error')
  assert.match(String(rec.details), /body_idle/)
  const ep = poolOf(gw).endpoints[0]
  assert.equal(ep.ejectedUntil > Date.now(), false)
})

test('a reload sets body_idle for streamed request bodies too (buffering.request off)', async () => {
  const url = await env.upstream((req, res) => {
    req.resume()
    req.on('end', () => res.end('got it'))
  })
  const input = oneUpstream([url], { timeouts: { connect: '1s', response_header: '10s', idle: '10s' } }, {
    listeners: [{ address: '127.0.0.1:0', timeouts: { body_idle: '10s' } }],
    routes: [{ name: 'default', upstream: 'default', buffering: { request: false } }],
  })
  const gw = await env.gateway(input)
  await gw.gateway.reload(configSchema.parse({ ...input, listeners: [{ address: input.listeners![0].address, timeouts: { body_idle: '300ms' } }] }))
  const s = net.connect(gw.port, '127.0.0.1')
  env.defer(() => { s.destroy() })
  const started = performance.now()
  s.write('POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\nX-Request-Id: reloaded-idle\r\n\r\n0123456789')
  const data = await readHead(s)
  const took = performance.now() - started
  assert.match(data, /^HTTP\/1\.1 408 /)
  assert.ok(took < 5000, `answered after ${took} ms: the body_idle before the reload (10 s) was used`)
  const rec = await gw.record('reloaded-idle')
  assert.equal(rec.status, 408)
  assert.equal(rec.error, 'http_request_error')
  assert.match(String(rec.details), /no request body bytes for 300ms \(body_idle\)/)
})

test('a body read past the buffering caps is still bounded by body_idle: a silent client gets 408, the endpoint is not blamed', async () => {
  const url = await env.upstream((req, res) => {
    req.resume()
    req.on('end', () => res.end('got it'))
  })
  const gw = await env.gateway(oneUpstream([url], {
    timeouts: { connect: '1s', response_header: '5s', idle: '200ms' },
    outlier_detection: { consecutive_failures: 1, base_ejection_time: '30s', max_ejection_percent: 100 },
  }, {
    listeners: [{ address: '127.0.0.1:0', timeouts: { body_idle: '400ms' } }],
    buffering: { memory: '1KiB', max_temp_file: '1KiB' },
  }))
  const s = net.connect(gw.port, '127.0.0.1')
  env.defer(() => { s.destroy() })
  const started = performance.now()
  // 4 KiB of a 100 KiB body: past the 2 KiB the caps hold, so the rest is read from the client live; then silence.
  s.write(`POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 102400\r\nX-Request-Id: silent-live-body\r\n\r\n${'x'.repeat(4096)}`)
  const data = await readHead(s)
  const took = performance.now() - started
  assert.match(data, /^HTTP\/1\.1 408 /)
  assert.ok(took >= 350, `answered after ${took} ms, before body_idle`)
  const rec = await gw.record('silent-live-body')
  assert.equal(rec.status, 408)
  assert.equal(rec.error, 'http_request_error')
  assert.match(String(rec.details), /body_idle/)
  assert.equal(poolOf(gw).endpoints[0].ejectedUntil > Date.now(), false)
})

test('a chunked body that grows over max_request_body_size past the buffering caps gets 413, the endpoint not blamed', async () => {
  const url = await env.upstream((req, res) => {
    req.resume()
    req.on('end', () => res.end('got it'))
  })
  const gw = await env.gateway(oneUpstream([url], {
    outlier_detection: { consecutive_failures: 1, base_ejection_time: '30s', max_ejection_percent: 100 },
  }, {
    listeners: [{ address: '127.0.0.1:0', max_request_body_size: '8KiB' }],
    buffering: { memory: '1KiB', max_temp_file: '1KiB' },
  }))
  const s = net.connect(gw.port, '127.0.0.1')
  env.defer(() => { s.destroy() })
  const chunk = `1000\r\n${'x'.repeat(4096)}\r\n`
  s.write(`POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nX-Request-Id: live-too-large\r\n\r\n${chunk}${chunk}${chunk}${chunk}0\r\n\r\n`)
  const data = await readHead(s)
  assert.match(data, /^HTTP\/1\.1 413 /)
  const rec = await gw.record('live-too-large')
  assert.equal(rec.status, 413)
  assert.equal(rec.error, 'http_request_denied')
  assert.equal(poolOf(gw).endpoints[0].ejectedUntil > Date.now(), false)
})

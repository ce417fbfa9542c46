/**
 * Per-connection admission over real sockets: pipelined HTTP/1.1 requests are handled one
 * at a time and in order, a connection whose parsed requests pile up stops being read,
 * HTTP/2 streams beyond the bound wait in order; and the per-client cap counts in and out.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import http2 from 'node:http2'
import net from 'node:net'
import { once } from 'node:events'
import { after, test } from 'node:test'
import { ConnectionGate } from '../../src/protect/connection-gate.ts'
import { ClientLimiter } from '../../src/protect/client-limit.ts'
import { waitFor } from '../helpers/gateway.ts'

const cleanups: Array<() => void> = []

after(() => { for (const c of cleanups) c() })

/** A handler that answers each request after `delayMs`, recording the order and the peak concurrency. */
function recorder(delayMs: number) {
  const seen: string[] = []
  let active = 0
  let peak = 0
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    seen.push(req.url ?? '')
    peak = Math.max(peak, ++active)
    setTimeout(() => {
      active--
      res.end(`${req.url}\n`)
    }, delayMs)
  }
  return { handler, seen, peak: () => peak }
}

async function listen(server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  cleanups.push(() => server.close())
  return (server.address() as net.AddressInfo).port
}

/** Writes `n` pipelined GETs in one write and reads until `n` responses arrived. */
async function pipeline(port: number, n: number): Promise<string> {
  const socket = net.connect(port, '127.0.0.1')
  let text = ''
  for (let i = 0; i < n; i++) text += `GET /${i} HTTP/1.1\r\nHost: x\r\n\r\n`
  socket.write(text)
  let got = ''
  socket.setEncoding('latin1')
  for await (const chunk of socket) {
    got += chunk as string
    if ((got.match(/HTTP\/1\.1 200/g) ?? []).length === n && got.endsWith(`/${n - 1}\n`)) break
  }
  socket.destroy()
  return got
}

test('20 pipelined requests on one connection are handled one at a time, in order', async () => {
  const r = recorder(5)
  const gate = new ConnectionGate({ maxRequestsPerConnection: 8, maxQueuedPerConnection: 64 }, r.handler)
  const server = http.createServer(gate.handle)
  const port = await listen(server)
  const got = await pipeline(port, 20)
  assert.equal(r.peak(), 1, 'never two requests of the connection at once')
  assert.deepEqual(r.seen, Array.from({ length: 20 }, (_, i) => `/${i}`))
  const bodies = [...got.matchAll(/\r\n\r\n(\/\d+)\n/g)].map((m) => m[1])
  assert.deepEqual(bodies, r.seen, 'responses in request order')
  assert.equal(gate.waiting, 0)
})

test('a connection whose waiting requests reach the bound is not read until they drain', async () => {
  const r = recorder(1)
  const gate = new ConnectionGate({ maxRequestsPerConnection: 8, maxQueuedPerConnection: 4 }, r.handler)
  const server = http.createServer(gate.handle)
  const port = await listen(server)
  // Two writes: the second arrives while the first batch waits, so the pause holds it back.
  const socket = net.connect(port, '127.0.0.1')
  let text = ''
  for (let i = 0; i < 300; i++) text += `GET /${i} HTTP/1.1\r\nHost: x\r\n\r\n`
  socket.write(text)
  let got = ''
  socket.setEncoding('latin1')
  for await (const chunk of socket) {
    got += chunk as string
    if (got.endsWith('/299\n')) break
  }
  socket.destroy()
  assert.equal(r.seen.length, 300)
  assert.equal(r.peak(), 1)
  assert.ok(gate.paused >= 1, 'the connection was paused at least once')
})

test('two connections do not wait for each other', async () => {
  let slowStarted = false
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (req.url === '/slow') slowStarted = true
    setTimeout(() => res.end('x'), req.url === '/slow' ? 1000 : 0)
  }
  const gate = new ConnectionGate({ maxRequestsPerConnection: 8, maxQueuedPerConnection: 64 }, handler)
  const port = await listen(http.createServer(gate.handle))
  const a = net.connect(port, '127.0.0.1')
  a.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n')
  cleanups.push(() => a.destroy())
  await waitFor('the slow request to be handled', () => slowStarted || undefined)
  const t0 = performance.now()
  const status = await new Promise<number>((resolve) => {
    http.get({ host: '127.0.0.1', port, path: '/fast', agent: false }, (res) => { res.resume(); resolve(res.statusCode ?? 0) })
  })
  assert.equal(status, 200)
  assert.ok(performance.now() - t0 < 500)
})

test('HTTP/2: 30 streams on one session, at most 4 handled at once, started in order', async () => {
  const r = recorder(20)
  const gate = new ConnectionGate({ maxRequestsPerConnection: 4, maxQueuedPerConnection: 64 }, r.handler)
  const server = http2.createServer(gate.handle as unknown as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void)
  const port = await listen(server)
  const client = http2.connect(`http://127.0.0.1:${port}`)
  cleanups.push(() => client.close())
  const statuses = await Promise.all(Array.from({ length: 30 }, (_, i) => new Promise<number>((resolve, reject) => {
    const s = client.request({ ':path': `/${i}` })
    let status = 0
    s.on('response', (h) => { status = Number(h[':status']) })
    s.on('error', reject)
    s.resume()
    s.on('end', () => resolve(status))
  })))
  assert.deepEqual(statuses, Array(30).fill(200))
  assert.equal(r.peak(), 4)
  assert.deepEqual(r.seen, Array.from({ length: 30 }, (_, i) => `/${i}`))
})

test('HTTP/2: a waiting stream the client resets is dropped, the others go on', async () => {
  const r = recorder(100)
  const gate = new ConnectionGate({ maxRequestsPerConnection: 1, maxQueuedPerConnection: 64 }, r.handler)
  const port = await listen(http2.createServer(gate.handle as unknown as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void))
  const client = http2.connect(`http://127.0.0.1:${port}`)
  cleanups.push(() => client.close())
  const first = client.request({ ':path': '/first' })
  const dropped = client.request({ ':path': '/dropped' })
  const last = client.request({ ':path': '/last' })
  for (const s of [first, last]) s.resume()
  dropped.on('error', () => {})
  await waitFor('the first stream to be handled', () => r.seen.length === 1 && gate.waiting === 2 || undefined)
  dropped.close(http2.constants.NGHTTP2_CANCEL)
  await Promise.all([once(first, 'end'), once(last, 'end')])
  assert.deepEqual(r.seen, ['/first', '/last'])
  assert.equal(gate.waiting, 0)
})

test('ClientLimiter: at most max per address, counted out on release', () => {
  const l = new ClientLimiter(2)
  assert.ok(l.acquire('a'))
  assert.ok(l.acquire('a'))
  assert.ok(!l.acquire('a'))
  assert.ok(l.acquire('b'))
  l.release('a')
  assert.ok(l.acquire('a'))
  assert.equal(l.refused, 1)
  l.release('a'); l.release('a'); l.release('b')
  assert.equal(l.clients, 0)
  const open = new ClientLimiter(null)
  for (let i = 0; i < 1000; i++) assert.ok(open.acquire('a'))
})

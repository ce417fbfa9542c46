// Write coalescing per event-loop turn: writes held until the turn's I/O is done, then sent
// together; end() and backpressure unchanged; HTTP/1.1 responses through CoalescingResponse.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import http from 'node:http'
import net from 'node:net'
import { after, before, test } from 'node:test'
import { parseProxyStatus } from '../../src/failures/proxy-status.ts'
import { CoalescingResponse, coalesceWrites } from '../../src/lib/coalesce.ts'
import { oneUpstream, testEnv } from '../helpers/gateway.ts'

const env = testEnv()

/** A loopback TCP server that records what each connection received, and when it ended. */
let sink: net.Server
const received: { data: string[]; ended: Promise<void> }[] = []

before(async () => {
  sink = net.createServer((s) => {
    const entry = { data: [] as string[], ended: once(s, 'end').then(() => {}) }
    received.push(entry)
    s.on('data', (b: Buffer) => entry.data.push(b.toString('latin1')))
    s.resume()
  })
  sink.listen(0, '127.0.0.1')
  await once(sink, 'listening')
})
after(() => sink.close())

async function connect(): Promise<{ socket: net.Socket; peer: (typeof received)[number] }> {
  const count = received.length
  const socket = net.connect((sink.address() as net.AddressInfo).port, '127.0.0.1')
  socket.setNoDelay(true)
  await once(socket, 'connect')
  while (received.length === count) await new Promise((r) => setImmediate(r))
  return { socket, peer: received[received.length - 1] }
}

const nextTurn = () => new Promise((r) => setImmediate(r))

test('without coalescing, a write to an idle socket leaves at once', async () => {
  const { socket } = await connect()
  socket.write('a')
  assert.equal(socket.writableLength, 0)
  socket.destroy()
})

test('writes of one turn are held until the turn ends, then sent together', async () => {
  const { socket, peer } = await connect()
  coalesceWrites(socket)
  socket.write('head;')
  coalesceWrites(socket) // a second call in the same turn changes nothing
  socket.write('body')
  assert.equal(socket.writableLength, 9, 'both writes are still held in this turn')
  await nextTurn()
  assert.equal(socket.writableLength, 0, 'released at the end of the turn')
  while (peer.data.join('').length < 9) await nextTurn()
  assert.equal(peer.data.join(''), 'head;body')
  // The next turn holds again only when asked.
  socket.write('x')
  assert.equal(socket.writableLength, 0)
  socket.destroy()
})

test('end() sends what was held before the connection closes', async () => {
  const { socket, peer } = await connect()
  coalesceWrites(socket)
  socket.write('last response')
  socket.end()
  await peer.ended
  assert.equal(peer.data.join(''), 'last response')
})

test('backpressure is kept: write returns false past the high-water mark, drain follows the release', async () => {
  const { socket, peer } = await connect()
  coalesceWrites(socket)
  const big = Buffer.alloc(socket.writableHighWaterMark + 1, 0x61)
  assert.equal(socket.write(big), false)
  await once(socket, 'drain')
  socket.end()
  await peer.ended
  assert.equal(peer.data.join('').length, big.length)
})

test('a destroyed socket is left alone', async () => {
  const { socket } = await connect()
  socket.destroy()
  coalesceWrites(socket)
  assert.equal(socket.writableCorked, 0)
  await nextTurn()
})

test('CoalescingResponse: writes held, end deferred to the end of the turn; keep-alive and Connection: close responses arrive whole', async (t) => {
  const seen: { held: number; endedAtOnce: boolean }[] = []
  const server = http.createServer({ ServerResponse: CoalescingResponse, keepAliveTimeout: 1000 }, (req, res) => {
    const body = `hello ${req.url}`
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length, ...(req.url === '/close' ? { connection: 'close' } : {}) })
    res.write(body.slice(0, 3))
    res.end(body.slice(3))
    seen.push({ held: res.socket?.writableLength ?? -1, endedAtOnce: res.writableEnded })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => server.close())
  const port = (server.address() as net.AddressInfo).port

  // Two requests on one connection, then one that closes it.
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  let text = ''
  socket.on('data', (b: Buffer) => { text += b.toString('latin1') })
  const closed = once(socket, 'close')
  const ask = async (path: string, seen: number) => {
    socket.write(`GET ${path} HTTP/1.1\r\nHost: t\r\n\r\n`)
    while (text.split('\r\n\r\n').length - 1 < seen) await nextTurn()
  }
  await ask('/one', 1)
  await ask('/two', 2)
  socket.write('GET /close HTTP/1.1\r\nHost: t\r\n\r\n')
  await closed
  const bodies = text.split(/HTTP\/1\.1 200 OK\r\n/).slice(1).map((r) => r.slice(r.indexOf('\r\n\r\n') + 4))
  assert.deepEqual(bodies, ['hello /one', 'hello /two', 'hello /close'])
  for (const s of seen) {
    assert.ok(s.held > 0, `head and first write held until the end of the turn (bytes held: ${s.held})`)
    assert.equal(s.endedAtOnce, false, 'end() takes effect at the end of the turn')
  }
})

test('CoalescingResponse: an end that throws is logged and its connection closed; the other responses of the turn still end', async (t) => {
  const server = http.createServer({ ServerResponse: CoalescingResponse }, (req, res) => {
    res.setHeader('content-length', '2')
    // A chunk of the wrong type makes Node's end() throw, now at the end of the turn.
    res.end(req.url === '/bad' ? (42 as unknown as string) : 'ok')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => server.close())
  const port = (server.address() as net.AddressInfo).port
  const get = (path: string) => new Promise<string>((resolve) => {
    http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let b = ''
      res.on('data', (c: Buffer) => { b += c })
      res.on('end', () => resolve(`${res.statusCode} ${b}`))
      res.on('error', () => resolve('aborted'))
    }).on('error', () => resolve('aborted'))
  })
  const [bad, good] = await Promise.all([get('/bad'), get('/good')])
  assert.equal(bad, 'aborted')
  assert.equal(good, '200 ok')
})

test('CoalescingResponse: a second end() in the same turn comes after the first, as with Node', async (t) => {
  let secondEnded: () => void = () => {}
  const second = new Promise<void>((resolve) => { secondEnded = resolve })
  const server = http.createServer({ ServerResponse: CoalescingResponse }, (_req, res) => {
    res.setHeader('content-length', '5')
    res.end('first')
    res.end(() => secondEnded())
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => server.close())
  const port = (server.address() as net.AddressInfo).port
  const body = await new Promise<string>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, agent: false }, (res) => {
      let b = ''
      res.on('data', (c: Buffer) => { b += c })
      res.on('end', () => resolve(b))
    }).on('error', reject)
  })
  assert.equal(body, 'first')
  await second // the second end's callback runs once the response finished
})

test('through the gateway: pipelined requests, the first one slowest, are answered whole and in order', async () => {
  const lab = await env.lab('ok')
  const gw = await env.gateway(oneUpstream([lab.url]))
  const socket = net.connect(gw.port, '127.0.0.1')
  await once(socket, 'connect')
  let text = ''
  socket.on('data', (b: Buffer) => { text += b.toString('latin1') })
  const closed = once(socket, 'close')
  // One write: the three requests reach Portico together; the last one closes the connection.
  socket.write('GET /delay/80 HTTP/1.1\r\nHost: a\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\n\r\nGET /third HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n')
  await closed
  const responses = text.split(/(?=HTTP\/1\.1 )/)
  assert.equal(responses.length, 3, text)
  const ids: string[] = []
  for (const [i, path] of ['/delay/80', '/second', '/third'].entries()) {
    const [head, body] = responses[i].split('\r\n\r\n')
    assert.match(head, /^HTTP\/1\.1 200 /)
    const fields = new Map(head.split('\r\n').slice(1).map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]))
    assert.equal(parseProxyStatus(fields.get('proxy-status') ?? '')[0]?.params['received-status'], 200)
    assert.equal(Number(fields.get('content-length')), Buffer.byteLength(body))
    assert.equal((JSON.parse(body) as { url: string }).url, path, 'responses come in the order of the requests')
    ids.push(fields.get('x-request-id') ?? '')
  }
  const records = await gw.waitForRecords(3)
  assert.deepEqual(records.map((r) => [r.path, r.status, r.error]).sort(), [['/delay/80', 200, null], ['/second', 200, null], ['/third', 200, null]])
  assert.deepEqual(records.map((r) => r.request_id).sort(), ids.sort())
})

/**
 * Http1Pool against raw TCP upstreams on loopback that write exact bytes: response
 * framing (RFC 9112 §6), persistence (§9.3), errors and their RFC 9209 causes, request
 * framing, the connection limit and its queue, backpressure, upgrades, close and destroy.
 */
import assert from 'node:assert/strict'
import { getEventListeners } from 'node:events'
import type { IncomingHttpHeaders } from 'node:http'
import net from 'node:net'
import { Readable, type Duplex } from 'node:stream'
import { afterEach, describe, test } from 'node:test'
import { request, type Dispatcher } from 'undici'
import { classify, type FailureStage } from '../../src/failures/classify.ts'
import { createConnector } from '../../src/upstream/connector.ts'
import type { Http1Controller, Http1DispatchOptions, Http1Handler } from '../../src/upstream/http1/connection.ts'
import { Http1Pool, type Http1PoolOptions } from '../../src/upstream/http1/pool.ts'
import { waitFor } from '../helpers/gateway.ts'

let cleanups: Array<() => unknown> = []
afterEach(async () => {
  const fns = cleanups.reverse()
  cleanups = []
  for (const fn of fns) await fn()
})

/** A promise with its resolve function, for steps one side waits on and the other opens. */
function gate<T = void>(): { promise: Promise<T>; open: (value: T) => void } {
  let open!: (value: T) => void
  const promise = new Promise<T>((resolve) => { open = resolve })
  return { promise, open }
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

// ---------------------------------------------------------------------------------------
// The upstream: a net server that parses requests just enough and answers with raw bytes.

/** A request as the upstream read it off the wire. */
interface Received {
  /** Index of the connection it came on, in accept order. */
  conn: number
  method: string
  path: string
  /** Field names lower-cased; repeated fields joined with `, `. */
  headers: Record<string, string>
  /** The request head as sent, without the final empty line. */
  head: string
  /** The body bytes as framed on the wire (chunk sizes included). */
  wire: Buffer
  /** The body, chunked coding removed. */
  body: Buffer
}

/** Answers one request: bytes to write, or nothing when it writes (or closes) `socket` itself. */
type Answer = (req: Received, socket: net.Socket) => string | Buffer | void | Promise<void>

interface RawUpstream {
  port: number
  /** Accepted connections, in order. */
  sockets: net.Socket[]
  requests: Received[]
  /** Bytes received on each connection. */
  bytes: number[]
  /** Resolves when connection `i` has closed. */
  closed(i: number): Promise<void>
  /** Resolves once `count` requests have arrived. */
  received(count: number): Promise<void>
}

/**
 * Decodes a chunked body starting at `from`; null until the last chunk and the
 * (empty) trailer section are in.
 */
function dechunk(buf: Buffer, from: number): { end: number; body: Buffer } | null {
  const parts: Buffer[] = []
  let at = from
  for (;;) {
    const eol = buf.indexOf('\r\n', at)
    if (eol < 0) return null
    const size = parseInt(buf.toString('latin1', at, eol).split(';')[0], 16)
    if (size === 0) return buf.length >= eol + 4 ? { end: eol + 4, body: Buffer.concat(parts) } : null
    if (buf.length < eol + 2 + size + 2) return null
    parts.push(buf.subarray(eol + 2, eol + 2 + size))
    at = eol + 2 + size + 2
  }
}

/** Splits the first complete request off `buf`; null while it is incomplete. */
function takeRequest(buf: Buffer, conn: number): { req: Received; rest: Buffer } | null {
  const headEnd = buf.indexOf('\r\n\r\n')
  if (headEnd < 0) return null
  const head = buf.toString('latin1', 0, headEnd)
  const [start, ...lines] = head.split('\r\n')
  const [method, path] = start.split(' ')
  const headers: Record<string, string> = {}
  for (const line of lines) {
    const colon = line.indexOf(':')
    const name = line.slice(0, colon).toLowerCase()
    const value = line.slice(colon + 1).trim()
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value
  }
  const from = headEnd + 4
  let end = from
  let body: Buffer
  if (headers['transfer-encoding'] === 'chunked') {
    const d = dechunk(buf, from)
    if (d === null) return null
    end = d.end
    body = d.body
  } else {
    end = from + Number(headers['content-length'] ?? 0)
    if (buf.length < end) return null
    body = buf.subarray(from, end)
  }
  const req = { conn, method, path, headers, head, wire: Buffer.from(buf.subarray(from, end)), body: Buffer.from(body) }
  return { req, rest: buf.subarray(end) }
}

/**
 * Starts an upstream on 127.0.0.1:0 that calls `answer` for each request, and
 * `onConnection` (if any) for each accepted connection before reading from it.
 * Closed after the test.
 */
async function rawUpstream(answer: Answer, onConnection?: (socket: net.Socket, index: number) => void): Promise<RawUpstream> {
  const sockets: net.Socket[] = []
  const requests: Received[] = []
  const bytes: number[] = []
  const closes: Promise<void>[] = []
  const server = net.createServer((socket) => {
    const conn = sockets.length
    sockets.push(socket)
    bytes.push(0)
    closes.push(new Promise((resolve) => socket.once('close', () => resolve())))
    socket.setNoDelay(true)
    socket.on('error', () => {})
    let buf: Buffer = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      bytes[conn] += chunk.length
      buf = Buffer.concat([buf, chunk])
      for (let next = takeRequest(buf, conn); next !== null; next = takeRequest(buf, conn)) {
        buf = next.rest
        requests.push(next.req)
        const out = answer(next.req, socket)
        if (typeof out === 'string' || Buffer.isBuffer(out)) socket.write(out)
      }
    })
    onConnection?.(socket, conn)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  cleanups.push(() => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy()
    server.close(() => resolve())
  }))
  return {
    port: (server.address() as net.AddressInfo).port,
    sockets, requests, bytes,
    async closed(i) {
      await waitFor(`upstream connection ${i}`, () => (i < closes.length ? true : undefined))
      await closes[i]
    },
    async received(count) {
      await waitFor(`${count} requests upstream`, () => (requests.length >= count ? true : undefined))
    },
  }
}

/** A response: status line, fields (`Content-Length` added for a body unless a field frames it), body. */
function response(status: string, fields: string[] = [], body = ''): string {
  const framed = fields.some((f) => /^(content-length|transfer-encoding):/i.test(f))
  const all = body !== '' && !framed ? [...fields, `Content-Length: ${Buffer.byteLength(body)}`] : fields
  return `HTTP/1.1 ${status}\r\n${all.map((f) => `${f}\r\n`).join('')}\r\n${body}`
}

const ok = (body = 'ok', fields: string[] = []): string => response('200 OK', fields, body)

// ---------------------------------------------------------------------------------------
// The client side: a pool to the upstream and a handler recording what it was told.

/** A pool to 127.0.0.1:`port` with small test defaults; destroyed after the test. */
function poolTo(port: number, options: Partial<Http1PoolOptions> = {}): Http1Pool {
  const pool = new Http1Pool({
    protocol: 'http:', hostname: '127.0.0.1', port, host: `127.0.0.1:${port}`,
    connect: createConnector({ connectTimeoutMs: 1000 }),
    connections: 10, keepAliveTimeoutMs: 10_000, keepAliveTimeoutThresholdMs: 1000, maxHeaderSize: 16 * 1024,
    ...options,
  })
  cleanups.push(() => { void pool.destroy() })
  return pool
}

/** An upstream answering with `answer` and a pool to it. */
async function setup(answer: Answer, options: Partial<Http1PoolOptions> = {}, onConnection?: (socket: net.Socket, index: number) => void) {
  const up = await rawUpstream(answer, onConnection)
  return { up, pool: poolTo(up.port, options) }
}

/** What one dispatched request was told, in order. */
interface Recorded {
  controller: Http1Controller | null
  /** The connection from `onSocket`; null when none was assigned. */
  socket: Duplex | null
  /** Every `onResponseStart`, interim responses included. */
  starts: Array<{ status: number; headers: IncomingHttpHeaders; message: string | undefined }>
  chunks: Buffer[]
  trailers: IncomingHttpHeaders | null
  error: Error | null
  upgrade: { status: number; headers: IncomingHttpHeaders; socket: Duplex } | null
  /** Callbacks in order (`start 200`, `data`, `end`, `error`, `upgrade`); a run of `data` counts once. */
  events: string[]
  /** What `dispatch` returned. */
  accepted: boolean
  /** Resolves once the request ended (end, error or upgrade); rejects after 4 s. */
  settled: Promise<Recorded>
}

const bodyOf = (r: Recorded): string => Buffer.concat(r.chunks).toString('latin1')
const statusOf = (r: Recorded): number => r.starts.at(-1)?.status ?? 0

/** Where the request was when it failed, as the proxy would tell `classify`. */
function stageOf(r: Recorded): FailureStage {
  if (r.socket === null) return 'connect'
  return r.starts.some((s) => s.status >= 200) ? 'stream_response' : 'await_response_header'
}

/** The RFC 9209 cause of the request's error. */
function causeOf(r: Recorded): string {
  assert.ok(r.error, `no error; events ${r.events.join(',')}`)
  return classify(r.error, stageOf(r)).type
}

/**
 * Dispatches a request on `pool` with a handler that records every callback, then calls
 * the matching `hooks` callback (to pause, throw, abort...).
 */
function record(pool: Http1Pool, options: Partial<Http1DispatchOptions> = {}, hooks: Partial<Http1Handler> = {}): Recorded {
  const ended = gate<Recorded>()
  const r: Recorded = {
    controller: null, socket: null, starts: [], chunks: [], trailers: null, error: null, upgrade: null, events: [], accepted: false,
    settled: Promise.race([ended.promise, new Promise<never>((_, reject) => {
      setTimeout(() => reject(new Error(`request not settled after 4 s; events ${r.events.join(',')}`)), 4000).unref()
    })]),
  }
  r.settled.catch(() => {})
  const event = (name: string): void => {
    if (name !== 'data' || r.events.at(-1) !== 'data') r.events.push(name)
  }
  const handler: Http1Handler = {
    onRequestStart(controller, context) {
      r.controller = controller
      hooks.onRequestStart?.(controller, context)
    },
    onSocket(socket) {
      r.socket = socket
      hooks.onSocket?.(socket)
    },
    onResponseStart(controller, status, headers, message) {
      r.starts.push({ status, headers, message })
      event(`start ${status}`)
      hooks.onResponseStart?.(controller, status, headers, message)
    },
    onResponseData(controller, chunk) {
      r.chunks.push(chunk)
      event('data')
      hooks.onResponseData?.(controller, chunk)
    },
    onResponseEnd(controller, trailers) {
      r.trailers = trailers
      event('end')
      ended.open(r)
      hooks.onResponseEnd?.(controller, trailers)
    },
    onResponseError(controller, err) {
      r.error = err
      event('error')
      ended.open(r)
      hooks.onResponseError?.(controller, err)
    },
    onRequestUpgrade(controller, status, headers, socket) {
      r.upgrade = { status, headers, socket }
      event('upgrade')
      ended.open(r)
      hooks.onRequestUpgrade?.(controller, status, headers, socket)
    },
  }
  r.accepted = pool.dispatch({ method: 'GET', path: '/', ...options }, handler)
  return r
}

/** Dispatches and waits for the end; the request must not fail. */
async function fetchOk(pool: Http1Pool, options: Partial<Http1DispatchOptions> = {}, hooks: Partial<Http1Handler> = {}): Promise<Recorded> {
  const r = await record(pool, options, hooks).settled
  assert.equal(r.error, null, `request failed: ${r.error?.message}`)
  return r
}

/** Dispatches and waits for the end; the request must fail. */
async function fetchFailing(pool: Http1Pool, options: Partial<Http1DispatchOptions> = {}, hooks: Partial<Http1Handler> = {}): Promise<Recorded & { error: Error }> {
  const r = await record(pool, options, hooks).settled
  assert.ok(r.error, `request did not fail; events ${r.events.join(',')}`)
  return r as Recorded & { error: Error }
}

/** The pool's counts without `size`, for one deepEqual. */
function counts(pool: Http1Pool): { connected: number; free: number; pending: number; running: number } {
  const { connected, free, pending, running } = pool.stats
  return { connected, free, pending, running }
}

// ---------------------------------------------------------------------------------------

describe('response framing', () => {
  test('content-length body, through undici\'s request()', async () => {
    const { up, pool } = await setup(() => ok('hello', ['X-A: 1']))
    const res = await request(`http://${pool.options.hostname}:${pool.options.port}/a?b=c`, { dispatcher: pool as unknown as Dispatcher })
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers['x-a'], '1')
    assert.equal(res.headers['content-length'], '5')
    assert.equal(await res.body.text(), 'hello')
    assert.equal(up.requests[0].path, '/a?b=c')
  })

  test('chunked body with chunk extensions and trailers: trailers reach onResponseEnd', async () => {
    const wire = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n'
      + '5;name=value\r\nhello\r\n6 ; ext="q"\r\n world\r\n1A\r\n' + 'z'.repeat(26) + '\r\n0\r\nX-Checksum: abc\r\nX-More: 1\r\n\r\n'
    const { up, pool } = await setup((_req, socket) => {
      // In two writes cut inside a chunk-size line, to parse across reads.
      const cut = wire.indexOf('6 ; ext') + 3
      socket.write(wire.slice(0, cut))
      setTimeout(() => socket.write(wire.slice(cut)), 20)
    })
    const r = await fetchOk(pool)
    assert.equal(bodyOf(r), `hello world${'z'.repeat(26)}`)
    assert.deepEqual(r.trailers, { 'x-checksum': 'abc', 'x-more': '1' })
    assert.deepEqual(r.events, ['start 200', 'data', 'end'])
    // The whole message was read: the connection is reused.
    await fetchOk(pool)
    assert.equal(up.sockets.length, 1)
  })

  test('trailers through undici\'s request()', async () => {
    const { pool } = await setup(() => 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: v\r\n\r\n')
    const res = await request(`http://${pool.options.hostname}:${pool.options.port}/`, { dispatcher: pool as unknown as Dispatcher })
    assert.equal(await res.body.text(), 'ok')
    assert.equal(res.trailers['x-t'], 'v')
  })

  test('close-delimited body ends at the FIN and the connection is not reused', async () => {
    const { up, pool } = await setup((_req, socket) => {
      socket.write('HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\npart1,')
      setTimeout(() => socket.end('part2'), 20)
    })
    const r = await fetchOk(pool)
    assert.equal(bodyOf(r), 'part1,part2')
    assert.equal(pool.stats.connected, 0)
    await fetchOk(pool)
    assert.equal(up.sockets.length, 2)
  })

  test('HEAD response with Content-Length but no body ends at the head; the connection is reused', async () => {
    const { up, pool } = await setup((req) => (req.method === 'HEAD' ? response('200 OK', ['Content-Length: 100']) : ok('after')))
    const head = await fetchOk(pool, { method: 'HEAD' })
    assert.equal(head.starts[0].headers['content-length'], '100')
    assert.deepEqual(head.chunks, [])
    // Had the pool waited for 100 body bytes, the next response would have been taken for them.
    const next = await fetchOk(pool)
    assert.equal(bodyOf(next), 'after')
    assert.equal(up.sockets.length, 1)
  })

  for (const [status, fields] of [['204 No Content', []], ['304 Not Modified', ['Content-Length: 50', 'ETag: "x"']]] as const) {
    test(`${status} has no body, even with Content-Length; the connection is reused`, async () => {
      const { up, pool } = await setup((req) => (req.path === '/first' ? response(status, [...fields]) : ok('second')))
      const r = await fetchOk(pool, { path: '/first' })
      assert.equal(statusOf(r), Number(status.slice(0, 3)))
      assert.deepEqual(r.events, [`start ${status.slice(0, 3)}`, 'end'])
      assert.equal(bodyOf(await fetchOk(pool, { path: '/second' })), 'second')
      assert.equal(up.sockets.length, 1)
    })
  }

  test('103 Early Hints then 200: onResponseStart for both, the final head split across reads', async () => {
    const hinted = gate()
    const { pool } = await setup(async (_req, socket) => {
      // The interim response and the start of the final head in one write; the rest once the 103 was seen.
      socket.write('HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Le')
      await hinted.promise
      socket.write('ngth: 2\r\n\r\nok')
    })
    const r = await fetchOk(pool, {}, { onResponseStart: (_c, status) => { if (status === 103) hinted.open() } })
    assert.deepEqual(r.starts.map((s) => s.status), [103, 200])
    assert.equal(r.starts[0].headers.link, '</style.css>; rel=preload')
    assert.equal(r.starts[0].message, 'Early Hints')
    assert.equal(bodyOf(r), 'ok')
  })
})

describe('keep-alive', () => {
  test('two sequential requests use one connection', async () => {
    const { up, pool } = await setup((req) => ok(req.path))
    const a = await fetchOk(pool, { path: '/1' })
    assert.deepEqual(counts(pool), { connected: 1, free: 1, pending: 0, running: 0 })
    const b = await fetchOk(pool, { path: '/2' })
    assert.equal(bodyOf(a), '/1')
    assert.equal(bodyOf(b), '/2')
    assert.equal(a.socket, b.socket)
    assert.equal(up.sockets.length, 1)
    assert.deepEqual(up.requests.map((q) => q.conn), [0, 0])
  })

  const notReused: Array<[what: string, wire: string]> = [
    ['Connection: close', ok('x', ['Connection: close'])],
    ['an HTTP/1.0 response without keep-alive', 'HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx'],
    ['Keep-Alive: timeout=1 (within the 1000 ms threshold)', ok('x', ['Keep-Alive: timeout=1'])],
    ['bytes beyond the end of the response', `${ok('x')}extra`],
  ]
  for (const [what, wire] of notReused) {
    test(`${what}: the connection is closed, the next request opens a new one`, async () => {
      const { up, pool } = await setup(() => wire)
      await fetchOk(pool)
      await up.closed(0)
      assert.equal(pool.stats.connected, 0)
      await fetchOk(pool)
      assert.equal(up.sockets.length, 2)
    })
  }

  const reused: Array<[what: string, wire: string]> = [
    ['an HTTP/1.0 response with Connection: keep-alive', 'HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx'],
    ['Keep-Alive: timeout=5', ok('x', ['Keep-Alive: timeout=5, max=100'])],
  ]
  for (const [what, wire] of reused) {
    test(`${what}: the connection is reused`, async () => {
      const { up, pool } = await setup(() => wire)
      await fetchOk(pool)
      await fetchOk(pool)
      assert.equal(up.sockets.length, 1)
    })
  }

  test('an idle connection past keepAliveTimeoutMs is not reused, and is closed', async () => {
    const { up, pool } = await setup(() => ok(), { keepAliveTimeoutMs: 200 })
    await fetchOk(pool)
    const idleAt = performance.now()
    await new Promise((resolve) => setTimeout(resolve, 250))
    // Taken past its time: closed, and the request goes on a new connection.
    await fetchOk(pool)
    assert.equal(up.sockets.length, 2)
    await up.closed(0)
    // The second one is closed by the idle sweep, no earlier than its keep-alive time.
    const secondIdleAt = performance.now()
    await up.closed(1)
    assert.ok(performance.now() - secondIdleAt >= 190, `closed ${(performance.now() - secondIdleAt).toFixed(0)} ms after going idle`)
    assert.ok(performance.now() - idleAt < 2500)
    assert.equal(pool.stats.connected, 0)
  })

  test('an upstream closing an idle connection: the pool forgets it, the next request opens a new one', async () => {
    const { up, pool } = await setup((req, socket) => {
      if (req.path === '/then-close') socket.end(ok())
      else return ok()
    })
    await fetchOk(pool, { path: '/then-close' })
    await waitFor('the pool to drop the closed connection', () => (pool.stats.connected === 0 ? true : undefined))
    assert.equal(pool.stats.free, 0)
    const r = await fetchOk(pool)
    assert.equal(bodyOf(r), 'ok')
    assert.equal(up.sockets.length, 2)
  })
})

describe('errors and their causes', () => {
  test('garbage instead of a status line: http_protocol_error at once, without waiting for the close', async () => {
    const { pool } = await setup(() => {}, {}, (socket) => socket.write('SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n'))
    const t0 = performance.now()
    const r = await fetchFailing(pool)
    assert.ok(performance.now() - t0 < 1000, `failed after ${performance.now() - t0} ms`)
    assert.equal(causeOf(r), 'http_protocol_error')
    assert.equal(pool.stats.connected, 0)
  })

  for (const complete of [true, false]) {
    test(`header section over maxHeaderSize (${complete ? 'whole' : 'still arriving'}): http_response_header_section_size`, async () => {
      const big = `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(2000)}\r\n${complete ? '\r\n' : ''}`
      const { pool } = await setup(() => big, { maxHeaderSize: 1024 })
      const r = await fetchFailing(pool)
      assert.equal(causeOf(r), 'http_response_header_section_size')
      assert.deepEqual(r.starts, [])
    })
  }

  const malformed: Array<[what: string, wire: string]> = [
    ['both Transfer-Encoding and Content-Length', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\nok\r\n0\r\n\r\n'],
    ['two different Content-Length fields', 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!'],
    ['a Content-Length list of different values', 'HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok!'],
    ['a non-numeric Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok'],
    ['obs-fold', 'HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 2\r\n\r\nok'],
    ['whitespace before the colon', 'HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok'],
    ['a status that is not three digits', 'HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok'],
  ]
  for (const [what, wire] of malformed) {
    test(`${what}: http_protocol_error before any onResponseStart`, async () => {
      const { up, pool } = await setup(() => wire)
      const r = await fetchFailing(pool)
      assert.equal(causeOf(r), 'http_protocol_error')
      assert.deepEqual(r.starts, [])
      await up.closed(0)
    })
  }

  test('a Content-Length list of one repeated value is taken as that value', async () => {
    const { pool } = await setup(() => 'HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok')
    assert.equal(bodyOf(await fetchOk(pool)), 'ok')
  })

  test('an invalid chunk size: a protocol error after onResponseStart, the connection closed', async () => {
    const { up, pool } = await setup(() => 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\nxx\r\n0\r\n\r\n')
    const r = await fetchFailing(pool)
    assert.deepEqual(r.events, ['start 200', 'data', 'error'])
    assert.equal((r.error as NodeJS.ErrnoException).code, 'HPE_INVALID_CHUNK_SIZE')
    assert.equal(classify(r.error, 'await_response_header').type, 'http_protocol_error')
    // Relayed downstream by then, so the proxy logs it as an incomplete response.
    assert.equal(causeOf(r), 'http_response_incomplete')
    await up.closed(0)
  })

  test('upstream closing before any byte of the response: connection_terminated', async () => {
    const { pool } = await setup((_req, socket) => { socket.end() })
    const r = await fetchFailing(pool)
    assert.ok(r.socket)
    assert.deepEqual(r.starts, [])
    assert.equal(causeOf(r), 'connection_terminated')
    assert.match(r.error.message, /without answering/)
  })

  test('upstream closing mid-body: onResponseError after onResponseStart and the bytes that came', async () => {
    const { pool } = await setup((_req, socket) => { socket.end('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789') })
    const r = await fetchFailing(pool)
    assert.deepEqual(r.events, ['start 200', 'data', 'error'])
    assert.equal(bodyOf(r), '0123456789')
    assert.equal(causeOf(r), 'http_response_incomplete')
    assert.equal(classify(r.error, 'await_response_header').type, 'connection_terminated')
    assert.equal(pool.stats.connected, 0)
  })

  test('refused port: connection_refused from the connector, no onSocket', async () => {
    const closedServer = net.createServer()
    await new Promise<void>((resolve) => closedServer.listen(0, '127.0.0.1', resolve))
    const port = (closedServer.address() as net.AddressInfo).port
    await new Promise((resolve) => closedServer.close(resolve))
    const pool = poolTo(port)
    const r = await fetchFailing(pool)
    assert.equal(r.socket, null)
    assert.equal((r.error as NodeJS.ErrnoException).code, 'ECONNREFUSED')
    assert.equal(causeOf(r), 'connection_refused')
    assert.deepEqual(counts(pool), { connected: 0, free: 0, pending: 0, running: 0 })
  })
})

describe('request framing', () => {
  test('a stream body without Content-Length is sent chunked, and read only once a connection is assigned', async () => {
    const release = gate()
    const { up, pool } = await setup(async (req, socket) => {
      if (req.path === '/hold') await release.promise
      socket.write(ok(`got ${req.body.length}`))
    }, { connections: 1 })
    const first = record(pool, { path: '/hold' })
    await up.received(1)
    const pieces = [Buffer.from('hello'), Buffer.alloc(26, 'z')]
    let reads = 0
    const body = new Readable({
      read() {
        reads++
        this.push(pieces.shift() ?? null)
      },
    })
    const second = record(pool, { method: 'PUT', path: '/upload', body })
    await tick()
    await tick()
    assert.equal(reads, 0, 'body read while the request waited for a connection')
    assert.equal(second.socket, null)
    release.open()
    await first.settled
    const r = await second.settled
    assert.equal(r.error, null)
    assert.ok(reads > 0)
    const seen = up.requests[1]
    assert.equal(seen.headers['transfer-encoding'], 'chunked')
    assert.equal(seen.headers['content-length'], undefined)
    assert.equal(seen.wire.toString('latin1'), `5\r\nhello\r\n1a\r\n${'z'.repeat(26)}\r\n0\r\n\r\n`)
    assert.equal(bodyOf(r), 'got 31')
  })

  test('a stream body with Content-Length is sent as is', async () => {
    const { up, pool } = await setup(() => ok())
    await fetchOk(pool, { method: 'POST', headers: { 'content-length': '11' }, body: Readable.from([Buffer.from('hello'), Buffer.from(' world')]) })
    assert.equal(up.requests[0].headers['content-length'], '11')
    assert.equal(up.requests[0].headers['transfer-encoding'], undefined)
    assert.equal(up.requests[0].wire.toString(), 'hello world')
  })

  test('a string or Buffer body gets its Content-Length', async () => {
    const { up, pool } = await setup(() => ok())
    await fetchOk(pool, { method: 'POST', body: 'héllo' })
    await fetchOk(pool, { method: 'PUT', body: Buffer.from([0, 1, 2]) })
    assert.equal(up.requests[0].headers['content-length'], '6')
    assert.equal(up.requests[0].body.toString(), 'héllo')
    assert.equal(up.requests[1].headers['content-length'], '3')
    assert.deepEqual([...up.requests[1].body], [0, 1, 2])
  })

  test('POST without a body sends content-length: 0; GET sends none', async () => {
    const { up, pool } = await setup(() => ok())
    await fetchOk(pool, { method: 'POST' })
    await fetchOk(pool, { method: 'GET' })
    assert.equal(up.requests[0].headers['content-length'], '0')
    assert.equal(up.requests[1].headers['content-length'], undefined)
  })

  test('Host is added when absent, kept when given', async () => {
    const { up, pool } = await setup(() => ok())
    await fetchOk(pool, { headers: ['x-a', '1'] })
    await fetchOk(pool, { headers: { Host: 'app.example', 'x-a': ['1', '2'] } })
    assert.equal(up.requests[0].headers.host, `127.0.0.1:${up.port}`)
    assert.equal(up.requests[1].headers.host, 'app.example')
    assert.equal(up.requests[1].head.match(/^host:/gim)?.length, 1)
    assert.equal(up.requests[1].headers['x-a'], '1, 2')
  })

  const refused: Array<[what: string, options: Partial<Http1DispatchOptions>]> = [
    ['a header value with CR LF', { headers: { 'x-evil': 'a\r\nInjected: 1' } }],
    ['a header value with a bare LF', { headers: ['x-evil', 'a\nb'] }],
    ['a header name that is not a token', { headers: { 'x evil': 'a' } }],
    ['a request target with CR LF', { path: '/a\r\nInjected: 1' }],
  ]
  for (const [what, options] of refused) {
    test(`${what} is refused before anything is written`, async () => {
      const { up, pool } = await setup(() => ok())
      const r = await fetchFailing(pool, options)
      assert.ok(r.error instanceof TypeError, String(r.error))
      await up.closed(0)
      assert.deepEqual(up.bytes, [0])
      assert.equal(pool.stats.connected, 0)
    })
  }
})

describe('connection limit and queue', () => {
  /** An upstream holding each response until the test releases it, and a pool of `connections` to it. */
  async function held(connections: number) {
    const releases: Array<() => void> = []
    const { up, pool } = await setup(async (req, socket) => {
      const g = gate()
      releases.push(() => g.open())
      await g.promise
      socket.write(ok(req.path))
    }, { connections })
    /** Lets response `i` go, once its request reached the upstream. */
    const release = async (i: number): Promise<void> => {
      await up.received(i + 1)
      releases[i]()
    }
    /** Sends `/1` and waits until the upstream holds it: with `connections: 1`, what follows is queued. */
    const occupy = async (): Promise<Recorded> => {
      const r = record(pool, { path: '/1' })
      await up.received(1)
      return r
    }
    return { up, pool, release, occupy }
  }

  test('connections: 1 with three concurrent requests: one after another on one connection', async () => {
    const { up, pool, release } = await held(1)
    const rs = [1, 2, 3].map((i) => record(pool, { path: `/${i}` }))
    assert.deepEqual(counts(pool), { connected: 0, free: 0, pending: 3, running: 0 })
    await release(0)
    await rs[0].settled
    await up.received(2)
    assert.deepEqual(counts(pool), { connected: 1, free: 0, pending: 1, running: 1 })
    assert.equal(rs[2].socket, null)
    await release(1)
    await release(2)
    await Promise.all(rs.map((r) => r.settled))
    assert.deepEqual(rs.map(bodyOf), ['/1', '/2', '/3'])
    assert.deepEqual(up.requests.map((q) => q.path), ['/1', '/2', '/3'])
    assert.equal(up.sockets.length, 1)
    assert.deepEqual(counts(pool), { connected: 1, free: 1, pending: 0, running: 0 })
  })

  test('aborting a queued request removes it without a connection and tells its handler the reason', async () => {
    const { up, pool, release, occupy } = await held(1)
    const first = await occupy()
    const queued = record(pool, { path: '/2' })
    assert.deepEqual(counts(pool), { connected: 1, free: 0, pending: 1, running: 1 })
    const reason = new Error('client went away')
    queued.controller?.abort(reason)
    await queued.settled
    assert.equal(queued.error, reason)
    assert.equal(queued.socket, null)
    assert.deepEqual(queued.events, ['error'])
    assert.deepEqual(counts(pool), { connected: 1, free: 0, pending: 0, running: 1 })
    await release(0)
    await first.settled
    // On the one connection, a /2 sent by mistake would reach the upstream before /3.
    const third = record(pool, { path: '/3' })
    await release(1)
    assert.equal(bodyOf(await third.settled), '/3')
    assert.deepEqual(up.requests.map((q) => q.path), ['/1', '/3'])
    assert.equal(up.sockets.length, 1)
    assert.deepEqual(counts(pool), { connected: 1, free: 1, pending: 0, running: 0 })
  })

  test('an aborted signal cancels a queued request the same way', async () => {
    const { up, pool, release, occupy } = await held(1)
    const first = await occupy()
    const ac = new AbortController()
    const queued = record(pool, { path: '/2', signal: ac.signal })
    ac.abort(new Error('deadline'))
    assert.equal((await queued.settled).error?.message, 'deadline')
    assert.equal(pool.stats.pending, 0)
    await release(0)
    await first.settled
    assert.equal(up.requests.length, 1)
  })

  test('a request that ended leaves no listener on its signal, and a later abort changes nothing', async () => {
    const { pool } = await setup((req) => ok(req.path))
    const ac = new AbortController()
    await fetchOk(pool, { path: '/s', signal: ac.signal })
    assert.equal(getEventListeners(ac.signal, 'abort').length, 0)
    ac.abort(new Error('late'))
    assert.deepEqual(counts(pool), { connected: 1, free: 1, pending: 0, running: 0 })
  })

  test('fresh: true opens a new connection even with one idle, beyond the limit for that request only', async () => {
    const { up, pool } = await setup((req) => ok(req.path), { connections: 1 })
    const a = await fetchOk(pool, { path: '/a' })
    assert.deepEqual(counts(pool), { connected: 1, free: 1, pending: 0, running: 0 })
    const b = await fetchOk(pool, { path: '/b', fresh: true })
    assert.notEqual(a.socket, b.socket)
    assert.equal(up.sockets.length, 2)
    assert.deepEqual(up.requests.map((q) => q.conn), [0, 1])
    // Over the limit when it went idle: closed.
    assert.deepEqual(counts(pool), { connected: 1, free: 1, pending: 0, running: 0 })
    const c = await fetchOk(pool, { path: '/c' })
    assert.equal(c.socket, a.socket)
  })
})

describe('backpressure', () => {
  test('pause on the first chunk of an 8 MB body, resume later: every byte, in order', async () => {
    const size = 8 * 1024 * 1024
    const payload = Buffer.alloc(size)
    for (let i = 0; i < size; i++) payload[i] = (i * 7 + (i >> 13)) & 0xff
    const { pool } = await setup((_req, socket) => {
      socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${size}\r\n\r\n`)
      socket.write(payload)
    })
    const paused = gate()
    let whilePaused = 0
    let isPaused = false
    const r = record(pool, {}, {
      onResponseData(controller) {
        if (isPaused) whilePaused++
        if (r.chunks.length === 1) {
          controller.pause()
          isPaused = true
          paused.open()
        }
      },
    })
    await paused.promise
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.equal(whilePaused, 0, 'data delivered while paused')
    assert.equal(r.socket?.isPaused(), true)
    assert.ok(Buffer.concat(r.chunks).length < size)
    isPaused = false
    r.controller?.resume()
    await r.settled
    assert.equal(r.error, null)
    const got = Buffer.concat(r.chunks)
    assert.equal(got.length, size)
    assert.ok(got.equals(payload), 'body differs from what the upstream sent')
  })

  const closing: Array<[what: string, chunks: string, events: string[]]> = [
    ['a complete response ends cleanly', '5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n', ['start 200', 'data', 'end']],
    ['an incomplete one fails after its last bytes', '5\r\nhello\r\n5\r\nworld\r\n', ['start 200', 'data', 'error']],
  ]
  for (const [what, chunks, events] of closing) {
    test(`the upstream's FIN while paused with bytes still unparsed: ${what}`, async () => {
      // One write and the FIN: the pool holds the second chunk when the handler pauses on the first.
      const { pool } = await setup((_req, socket) => { socket.end(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunks}`) })
      const r = record(pool, {}, {
        onResponseData(controller) {
          if (r.chunks.length === 1) controller.pause()
        },
      })
      await waitFor('the pause', () => (r.controller?.paused ? true : undefined))
      await waitFor('the FIN', () => (r.socket?.readableEnded ? true : undefined))
      assert.deepEqual(r.events, ['start 200', 'data'])
      r.controller?.resume()
      await r.settled
      assert.deepEqual(r.events, events)
      assert.equal(bodyOf(r), 'helloworld')
    })
  }
})

describe('upgrade', () => {
  test('101: onRequestUpgrade gets the socket with the bytes sent after the head, the pool lets it go', async () => {
    const { up, pool } = await setup((_req, socket) => {
      socket.removeAllListeners('data')
      socket.on('data', (chunk: Buffer) => socket.write(`echo:${chunk.toString()}`))
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhello-after-101')
    })
    const r = await record(pool, { upgrade: 'websocket' }).settled
    assert.ok(r.upgrade)
    assert.equal(r.upgrade.status, 101)
    assert.equal(r.upgrade.headers.upgrade, 'websocket')
    assert.equal(r.upgrade.socket, r.socket)
    assert.equal(up.requests[0].headers.connection, 'upgrade')
    assert.equal(up.requests[0].headers.upgrade, 'websocket')
    assert.deepEqual(counts(pool), { connected: 0, free: 0, pending: 0, running: 0 })
    // Read later, as the proxy does after its promise chain: nothing may have been lost meanwhile.
    await tick()
    const socket = r.upgrade.socket
    let got = ''
    const read = (until: string): Promise<true> => waitFor(`"${until}" from the upgraded socket`, () => (got.includes(until) ? true : undefined), 2000)
    socket.on('data', (chunk: Buffer) => { got += chunk.toString() })
    await read('hello-after-101')
    socket.write('ping')
    await read('echo:ping')
    assert.equal(got, 'hello-after-101echo:ping')
    socket.destroy()
  })

  test('an upgrade answered with a final status: onResponseStart, and the connection is not reused', async () => {
    const { up, pool } = await setup(() => ok('no'))
    const r = await fetchOk(pool, { upgrade: 'websocket' })
    assert.equal(statusOf(r), 200)
    assert.equal(r.upgrade, null)
    await up.closed(0)
    assert.equal(pool.stats.connected, 0)
  })
})

describe('close and destroy', () => {
  test('close() resolves once the in-flight request finished, and refuses new ones', async () => {
    const release = gate()
    const { up, pool } = await setup(async (_req, socket) => {
      await release.promise
      socket.write(ok('last'))
    })
    const inFlight = record(pool)
    await up.received(1)
    let closed = false
    const closing = pool.close().then(() => { closed = true })
    await tick()
    assert.equal(closed, false)
    assert.equal(pool.closed, true)
    const late = record(pool)
    assert.equal(late.accepted, false)
    await late.settled
    assert.equal((late.error as NodeJS.ErrnoException | null)?.code, 'UND_ERR_CLOSED')
    release.open()
    await closing
    assert.equal(bodyOf(await inFlight.settled), 'last')
    await up.closed(0)
    assert.equal(pool.stats.connected, 0)
  })

  test('destroy() fails running, queued and connecting requests', async () => {
    const { up, pool } = await setup(() => {}, { connections: 1 })
    const running = record(pool, { path: '/1' })
    await up.received(1)
    const queued = record(pool, { path: '/2' })
    const connecting = record(pool, { path: '/3', fresh: true })
    const err = new Error('shutting down')
    const destroyed = pool.destroy(err)
    for (const r of [running, queued, connecting]) assert.equal((await r.settled).error, err, r.events.join(','))
    await destroyed
    await up.closed(0)
    assert.deepEqual(counts(pool), { connected: 0, free: 0, pending: 0, running: 0 })
    assert.equal(record(pool).accepted, false)
  })
})

describe('handler errors', () => {
  for (const where of ['onResponseStart', 'onResponseData'] as const) {
    test(`a handler throwing in ${where}: the request fails, the connection is closed, the process carries on`, async () => {
      const uncaught: unknown[] = []
      const onUncaught = (err: unknown): void => { uncaught.push(err) }
      process.on('uncaughtException', onUncaught)
      cleanups.push(() => process.removeListener('uncaughtException', onUncaught))
      const { up, pool } = await setup(() => ok('body'))
      const boom = new Error('handler bug')
      const r = await fetchFailing(pool, {}, { [where]: () => { throw boom } })
      assert.equal(r.error, boom)
      await up.closed(0)
      assert.equal(pool.stats.connected, 0)
      assert.equal(bodyOf(await fetchOk(pool)), 'body')
      await tick()
      assert.deepEqual(uncaught, [])
    })
  }
})

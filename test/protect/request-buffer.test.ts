/**
 * Request-body buffering over real sockets: the body is read in full (memory, then an
 * unlinked temporary file) before anything else happens, can be streamed again for each
 * try, and is refused when too large, idle, or cut short.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import net from 'node:net'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { readdirSync } from 'node:fs'
import { after, test } from 'node:test'
import type { Readable } from 'node:stream'
import { bufferRequestBody, RequestBodyError, type BufferedBody } from '../../src/protect/request-buffer.ts'
import type { BufferBudget } from '../../src/protect/spill.ts'
import { openTempFiles, testBudget } from './buffers.ts'
import { waitFor } from '../helpers/gateway.ts'

const cleanups: Array<() => void> = []

after(() => { for (const c of cleanups) c() })

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of stream) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

type Outcome = { body: BufferedBody | null; error: RequestBodyError | null; openDuring: string[]; replays: Buffer[] }

/** A server that buffers each request body, reads it back twice, answers 200 (or the error code), and reports what it saw. */
async function bufferingServer(budget: BufferBudget, dir: string, maxBytes: number | null, idleTimeoutMs: number) {
  const outcomes: Outcome[] = []
  let notify: (() => void) | null = null
  const server = http.createServer(async (req, res) => {
    const o: Outcome = { body: null, error: null, openDuring: [], replays: [] }
    try {
      o.body = await bufferRequestBody(req, { budget, maxBytes, idleTimeoutMs })
      o.openDuring = openTempFiles(dir)
      o.replays.push(await collect(o.body.open()))
      if (o.body.complete) o.replays.push(await collect(o.body.open()))
      o.body.dispose()
      res.end('ok')
    } catch (err) {
      o.error = err as RequestBodyError
      res.writeHead(o.error.code === 'too_large' ? 413 : 408, { connection: 'close' })
      res.end()
    }
    outcomes.push(o)
    notify?.()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  cleanups.push(() => { server.closeAllConnections(); server.close() })
  return {
    port: (server.address() as net.AddressInfo).port,
    outcomes,
    async next(): Promise<Outcome> {
      while (outcomes.length === 0) await new Promise<void>((r) => { notify = r })
      return outcomes.shift() as Outcome
    },
  }
}

function post(port: number, body: Buffer, chunked = false): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', agent: false, headers: chunked ? {} : { 'content-length': body.length } }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
    if (chunked) {
      for (let i = 0; i < body.length; i += 100_000) req.write(body.subarray(i, i + 100_000))
      req.end()
    } else req.end(body)
  })
}

test('a small body stays in memory and can be read twice', async () => {
  const { budget, dir, cleanup } = testBudget()
  cleanups.push(cleanup)
  const srv = await bufferingServer(budget, dir, null, 5000)
  const body = randomBytes(10_000)
  assert.equal(await post(srv.port, body), 200)
  const o = await srv.next()
  assert.equal(o.error, null)
  assert.equal(o.body?.complete, true)
  assert.equal(o.body?.spilled, false)
  assert.deepEqual(o.openDuring, [])
  assert.equal(o.replays.length, 2)
  for (const r of o.replays) assert.ok(r.equals(body))
  assert.equal(budget.memory, 0, 'memory given back')
})

test('a 5 MB chunked body spills to an unlinked temporary file, read twice intact, closed on dispose', async () => {
  const { budget, dir, cleanup } = testBudget({ memory: 64 * 1024 })
  cleanups.push(cleanup)
  const srv = await bufferingServer(budget, dir, null, 5000)
  const body = randomBytes(5 * 1024 * 1024)
  assert.equal(await post(srv.port, body, true), 200)
  const o = await srv.next()
  assert.equal(o.error, null)
  assert.equal(o.body?.spilled, true)
  assert.equal(o.openDuring.length, 1, 'one temporary file open while buffered')
  assert.match(o.openDuring[0], /\(deleted\)$/, 'unlinked as soon as it was opened')
  assert.deepEqual(readdirSync(dir), [], 'no file left in the directory at any time')
  assert.equal(o.replays.length, 2, 'complete, so read back twice')
  for (const r of o.replays) assert.ok(r.equals(body))
  await waitFor('the descriptor to close after dispose', () => openTempFiles(dir).length === 0 || undefined)
  assert.equal(budget.temp, 0)
  assert.equal(budget.files, 0)
  assert.equal(budget.spills, 1)
})

test('a body over maxBytes is refused as too_large, and what was stored is freed', async () => {
  const { budget, dir, cleanup } = testBudget({ memory: 4096 })
  cleanups.push(cleanup)
  const srv = await bufferingServer(budget, dir, 100_000, 5000)
  assert.equal(await post(srv.port, randomBytes(300_000), true), 413)
  const o = await srv.next()
  assert.equal(o.error?.code, 'too_large')
  await waitFor('the stored part to be freed', () => budget.memory === 0 && budget.temp === 0 && openTempFiles(dir).length === 0 || undefined)
  assert.equal(budget.memory, 0)
  assert.equal(budget.temp, 0)
  assert.deepEqual(openTempFiles(dir), [])
})

test('a client that stops sending gets idle after the idle timeout', async () => {
  const { budget, dir, cleanup } = testBudget()
  cleanups.push(cleanup)
  const srv = await bufferingServer(budget, dir, null, 200)
  const socket = net.connect(srv.port, '127.0.0.1')
  socket.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc')
  const t0 = performance.now()
  const o = await srv.next()
  const waited = performance.now() - t0
  assert.equal(o.error?.code, 'idle')
  assert.ok(waited >= 150 && waited < 2000, `idle after ${waited.toFixed(0)}ms`)
  const [data] = await once(socket, 'data') as [Buffer]
  assert.match(data.toString(), /^HTTP\/1\.1 408/)
  socket.destroy()
})

test('a client that goes away mid-body is client_closed', async () => {
  const { budget, dir, cleanup } = testBudget({ memory: 1024 })
  cleanups.push(cleanup)
  const srv = await bufferingServer(budget, dir, null, 5000)
  const socket = net.connect(srv.port, '127.0.0.1')
  socket.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n' + 'a'.repeat(5000))
  await waitFor('part of the body to be stored', () => budget.memory + budget.temp > 0 || undefined)
  socket.destroy()
  const o = await srv.next()
  assert.equal(o.error?.code, 'client_closed')
  await waitFor('the stored part to be freed', () => budget.memory === 0 && budget.temp === 0 && openTempFiles(dir).length === 0 || undefined)
  assert.equal(budget.memory, 0)
  assert.equal(budget.temp, 0)
  assert.deepEqual(openTempFiles(dir), [])
})

test('at the caps the body is returned incomplete: stored part, then the rest live, once', async () => {
  const { budget, dir, cleanup } = testBudget({ memory: 16 * 1024, maxTempFile: 64 * 1024 })
  cleanups.push(cleanup)
  const srv = await bufferingServer(budget, dir, null, 5000)
  const body = randomBytes(1024 * 1024)
  assert.equal(await post(srv.port, body, true), 200)
  const o = await srv.next()
  assert.equal(o.error, null)
  assert.equal(o.body?.complete, false)
  assert.ok((o.body?.size ?? 0) <= 16 * 1024 + 64 * 1024)
  assert.equal(o.replays.length, 1)
  assert.ok(o.replays[0].equals(body), 'stored part then live rest, in order')
  assert.equal(o.body?.replayable, false)
})

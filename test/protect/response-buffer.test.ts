/**
 * Response buffering over real sockets: a producer writes at its own pace into the sink
 * while the client does not read; the sink holds the bytes (memory, then an unlinked
 * temporary file) so the producer is done long before the client, and the client then
 * gets every byte in order. At the caps, the sink pushes back on the producer instead.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import net from 'node:net'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { after, test } from 'node:test'
import { ResponseBuffer } from '../../src/protect/response-buffer.ts'
import type { BufferBudget } from '../../src/protect/spill.ts'
import { openTempFiles, testBudget } from './buffers.ts'
import { waitFor } from '../helpers/gateway.ts'

const cleanups: Array<() => void> = []

after(() => { for (const c of cleanups) c() })

const SIZE = 8 * 1024 * 1024
const DATA = randomBytes(SIZE)
const CHUNK = 16 * 1024

interface Produced { done: Promise<number>; pauses: number; spilled: () => boolean; openDuring: string[] }

/** A server whose responses write DATA through a ResponseBuffer as fast as the sink takes it. */
async function producer(budget: BufferBudget, dir: string) {
  const runs: Produced[] = []
  const server = http.createServer((req, res) => {
    const size = Number(req.url?.slice(1)) || SIZE
    res.writeHead(200, { 'content-length': size })
    const sink = new ResponseBuffer(res, budget)
    let resolve: (ms: number) => void = () => {}
    const run: Produced = { done: new Promise((r) => { resolve = r }), pauses: 0, spilled: () => sink.spilled, openDuring: [] }
    runs.push(run)
    const t0 = performance.now()
    let at = 0
    const pump = (): void => {
      while (at < size) {
        const chunk = DATA.subarray(at, Math.min(at + CHUNK, size))
        at += chunk.length
        if (!sink.write(chunk, pump)) {
          run.pauses++
          return
        }
      }
      run.openDuring = openTempFiles(dir)
      sink.end(null)
      resolve(performance.now() - t0)
    }
    pump()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  cleanups.push(() => { server.closeAllConnections(); server.close() })
  return { port: (server.address() as net.AddressInfo).port, runs }
}

/** Set when a {@link slowGet} client starts reading. */
let clientReading = false

/** Sends a GET, reads nothing for `stallMs`, then reads everything. */
async function slowGet(port: number, stallMs: number, path = '/'): Promise<Buffer> {
  const socket = net.connect(port, '127.0.0.1')
  socket.pause()
  socket.write('GET ' + path + ' HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  await new Promise((r) => setTimeout(r, stallMs))
  const chunks: Buffer[] = []
  clientReading = true
  socket.on('data', (c: Buffer) => chunks.push(c))
  socket.resume()
  await once(socket, 'end')
  const all = Buffer.concat(chunks)
  return all.subarray(all.indexOf('\r\n\r\n') + 4)
}

test('8 MB to a client that reads nothing for 1 s: the producer finishes at once, the body spills and arrives intact', async () => {
  const { budget, dir, cleanup } = testBudget({ memory: 64 * 1024 })
  cleanups.push(cleanup)
  const srv = await producer(budget, dir)
  clientReading = false
  const got = slowGet(srv.port, 2000)
  await waitFor('the response to start', () => srv.runs.length > 0 || undefined)
  const ms = await srv.runs[0].done
  assert.equal(clientReading, false, `the producer took ${ms.toFixed(0)}ms: the client started reading first`)
  assert.ok(srv.runs[0].spilled(), 'spilled to a temporary file')
  assert.equal(srv.runs[0].openDuring.length, 1)
  assert.match(srv.runs[0].openDuring[0], /\(deleted\)$/)
  const body = await got
  assert.equal(body.length, SIZE)
  assert.ok(body.equals(DATA), 'bytes in order')
  await waitFor('the temporary file to close once the client took the body', () => openTempFiles(dir).length === 0 || undefined)
  assert.equal(budget.temp, 0)
  assert.equal(budget.memory, 0)
})

test('at the caps the sink pushes back on the producer and still delivers every byte in order', async () => {
  const { budget, dir, cleanup } = testBudget({ memory: 16 * 1024, maxTempFile: 256 * 1024 })
  cleanups.push(cleanup)
  const srv = await producer(budget, dir)
  const body = await slowGet(srv.port, 200)
  assert.equal(body.length, SIZE)
  assert.ok(body.equals(DATA))
  assert.ok(srv.runs[0].pauses > 0, 'the producer was paused at the caps')
  assert.ok(budget.temp === 0 && budget.memory === 0)
})

test('a client that goes away frees the temporary file', async () => {
  const { budget, dir, cleanup } = testBudget({ memory: 16 * 1024 })
  cleanups.push(cleanup)
  const srv = await producer(budget, dir)
  const socket = net.connect(srv.port, '127.0.0.1')
  socket.pause()
  socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
  await waitFor('the response to start', () => srv.runs.length > 0 || undefined)
  await srv.runs[0].done
  assert.equal(openTempFiles(dir).length, 1)
  socket.destroy()
  const deadline = performance.now() + 2000
  while (openTempFiles(dir).length > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10))
  assert.deepEqual(openTempFiles(dir), [])
  assert.equal(budget.temp, 0)
  assert.equal(budget.memory, 0)
})

test('a response the connection takes at once goes straight through: nothing is stored', async () => {
  const { budget, dir, cleanup } = testBudget({ memory: 64 * 1024 })
  cleanups.push(cleanup)
  const srv = await producer(budget, dir)
  const body = await slowGet(srv.port, 0, '/4096')
  assert.ok(body.equals(DATA.subarray(0, 4096)))
  assert.equal(budget.spills, 0)
  assert.equal(srv.runs[0].spilled(), false)
})

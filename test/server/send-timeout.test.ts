/**
 * listeners[].timeouts.send (nginx send_timeout): a client that takes no byte of its
 * response loses the connection after the timeout, logged as such, and what it held (the
 * buffered response) is freed; a slow client that keeps taking bytes is not cut.
 */
import assert from 'node:assert/strict'
import net from 'node:net'
import { test } from 'node:test'
import { oneUpstream, testEnv, waitFor } from '../helpers/gateway.ts'

const env = testEnv()
const BODY = 8 * 1024 * 1024

async function bigUpstream(size = BODY): Promise<string> {
  const chunk = Buffer.alloc(64 * 1024, 'x')
  return env.upstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(size) })
    let left = size / chunk.length
    const more = () => {
      while (left > 0) {
        left--
        if (!res.write(chunk)) return void res.once('drain', more)
      }
      res.end()
    }
    more()
  })
}

function request(port: number, id: string): net.Socket {
  const s = net.connect(port, '127.0.0.1')
  s.on('error', () => {})
  env.defer(() => { s.destroy() })
  s.write(`GET /big HTTP/1.1\r\nHost: t\r\nX-Request-Id: ${id}\r\n\r\n`)
  return s
}

test('a client that takes no response byte is cut after timeouts.send, logged, its buffered response freed', async () => {
  const url = await bigUpstream()
  const gw = await env.gateway(oneUpstream([url], {}, { listeners: [{ address: '127.0.0.1:0', timeouts: { send: '300ms' } }] }))
  const s = request(gw.port, 'never-reads')
  s.pause()
  const started = performance.now()
  // The client reads nothing: what it would see comes only once it reads, so the proxy's side tells.
  const rec = await gw.record('never-reads', 5000)
  const took = performance.now() - started
  assert.ok(took >= 250, `closed after ${took} ms, before the send timeout`)
  assert.equal(rec.status, 499)
  assert.equal(rec.downstream, 'client_closed')
  assert.match(String(rec.details), /timeouts\.send/)
  // Reading now, the client gets what was in flight, then the end: never the whole body.
  let got = 0
  s.on('data', (c: Buffer) => { got += c.length })
  s.resume()
  await new Promise<void>((resolve) => s.once('close', () => resolve()))
  assert.ok(got < BODY, `the client got ${got} bytes of ${BODY}`)
  await gw.settled(3000)
  await waitFor('the buffered response to be freed', () => (gw.gateway.buffers.memory === 0 && gw.gateway.buffers.temp === 0 && gw.gateway.buffers.files === 0 ? true : undefined))
})

test('a client that pauses, but for less than timeouts.send each time, is not cut', async () => {
  const size = 32 * 1024 * 1024
  const url = await bigUpstream(size)
  const gw = await env.gateway(oneUpstream([url], {}, { listeners: [{ address: '127.0.0.1:0', timeouts: { send: '1s' } }] }))
  const s = request(gw.port, 'slow-reader')
  let got = 0
  s.on('data', (c: Buffer) => { got += c.length })
  s.pause()
  // Reads for 2 ms every 600 ms, and nothing in between: pauses under the send timeout, several of them.
  let pauses = 0
  const tick = setInterval(() => {
    pauses++
    s.resume()
    setTimeout(() => s.pause(), 2)
  }, 600)
  env.defer(() => clearInterval(tick))
  await waitFor('the whole response', () => (got >= size ? true : undefined), 30_000)
  clearInterval(tick)
  assert.ok(pauses >= 3, `only ${pauses} pauses: the client was not slow`)
  const rec = await gw.record('slow-reader')
  assert.equal(rec.status, 200)
  assert.equal(rec.error, null)
  assert.equal(rec.details, null)
})

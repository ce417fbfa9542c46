/**
 * Request and response buffering through a real gateway: 100 MB each way within the
 * documented memory caps (RSS growth stated), spilling to a temporary file that is gone
 * afterwards; the body idle timeout (408); buffering turned off per route; a directory
 * that cannot hold temporary files refused at start.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { after, before, describe, test } from 'node:test'
import { configSchema } from '../../src/config/schema.ts'
import { Gateway } from '../../src/server/gateway.ts'
import { memoryAccessLog } from '../../src/observe/access-log.ts'
import { send } from '../helpers/client.ts'
import { expectExchange } from '../helpers/expect.ts'
import { oneUpstream, testEnv, waitFor } from '../helpers/gateway.ts'
import { peakRssGrowth, zeroChunks } from '../helpers/memory.ts'
import { openTempFiles } from './buffers.ts'

const env = testEnv()
let dir = ''
before(() => { dir = mkdtempSync(join(tmpdir(), 'portico-buffering-')) })
after(() => rmSync(dir, { recursive: true, force: true }))

const MiB = 1024 * 1024
const SIZE = 100 * MiB
/** RSS growth allowed while 100 MB pass: the caps say 64 KiB a buffer; the rest is socket and stream buffers. */
const RSS_LIMIT = 32 * MiB

/** Samples the temporary files open in `temp` and the bytes they hold, every 10 ms, until stopped. */
function watchTemp(temp: string, budget: { temp: number }) {
  const seen = { files: 0, bytes: 0 }
  const timer = setInterval(() => {
    seen.files = Math.max(seen.files, openTempFiles(temp).length)
    seen.bytes = Math.max(seen.bytes, budget.temp)
  }, 10)
  return { seen, stop: () => clearInterval(timer) }
}

describe('buffering 100 MB', () => {
  test('a 100 MB upload is read into a temporary file before going upstream, RSS growth under 32 MB, the file gone afterwards', async () => {
    const lab = await env.lab('ok')
    const temp = join(dir, 'upload')
    const gw = await env.gateway(oneUpstream([lab.url], {}, { buffering: { temp_dir: temp } }))
    // Warm up code paths and buffers so the baseline is not taken on a cold process.
    await send(gw.port, { method: 'POST', path: '/echo', body: Readable.from(zeroChunks(4 * MiB)), discardBody: true })
    const watch = watchTemp(temp, gw.gateway.buffers)
    const { result: reply, growth } = await peakRssGrowth(() => send(gw.port, {
      method: 'POST', path: '/echo', body: Readable.from(zeroChunks(SIZE)), discardBody: true, timeoutMs: 60_000,
    }))
    watch.stop()
    console.log(`# upload: ${JSON.stringify({ rss_growth_mib: +(growth / MiB).toFixed(1), temp_peak_mib: +(watch.seen.bytes / MiB).toFixed(1), temp_files_peak: watch.seen.files })}`)
    assert.equal(reply.error, undefined)
    assert.equal(reply.bytes, SIZE)
    await expectExchange(gw, reply, { status: 200, error: null, attempts: 1 })
    assert.ok(watch.seen.bytes >= SIZE - 2 * MiB, `the body went to a temporary file (${watch.seen.bytes} bytes at most)`)
    assert.ok(watch.seen.files >= 1)
    assert.ok(growth < RSS_LIMIT, `RSS grew by ${(growth / MiB).toFixed(1)} MiB`)
    await waitFor('temporary files closed', () => (openTempFiles(temp).length === 0 ? true : undefined))
    assert.equal(gw.gateway.buffers.temp, 0)
    assert.equal(gw.gateway.buffers.memory, 0)
  })

  test('a 100 MB response to a client that reads nothing for 1 s spills, the upstream is done first, RSS growth under 32 MB, the file gone afterwards', async () => {
    const lab = await env.lab('ok')
    const temp = join(dir, 'download')
    const gw = await env.gateway(oneUpstream([lab.url], {}, { buffering: { temp_dir: temp } }))
    await send(gw.port, { path: '/bytes/4194304', discardBody: true })
    const watch = watchTemp(temp, gw.gateway.buffers)
    const { result, growth } = await peakRssGrowth(async () => {
      const socket = net.connect(gw.port, '127.0.0.1')
      socket.pause()
      socket.write(`GET /bytes/${SIZE} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Request-Id: big-download\r\n\r\n`)
      await new Promise((r) => setTimeout(r, 1000))
      const upstreamDoneWhileIdle = [...gw.gateway.runtime.pools.values()][0].endpoints[0].inFlight === 0
      let bytes = 0
      socket.on('data', (c: Buffer) => { bytes += c.length })
      socket.resume()
      await new Promise((r) => socket.once('close', r))
      return { bytes, upstreamDoneWhileIdle }
    })
    watch.stop()
    console.log(`# download: ${JSON.stringify({ rss_growth_mib: +(growth / MiB).toFixed(1), temp_peak_mib: +(watch.seen.bytes / MiB).toFixed(1), upstream_done_before_client_read: result.upstreamDoneWhileIdle })}`)
    assert.ok(result.bytes > SIZE, 'head and the whole body')
    const r = await gw.record('big-download')
    assert.equal(r.status, 200)
    assert.equal(r.bytes_sent, SIZE)
    assert.ok(watch.seen.bytes >= SIZE / 2, `the response went to a temporary file (${watch.seen.bytes} bytes at most)`)
    assert.ok(growth < RSS_LIMIT, `RSS grew by ${(growth / MiB).toFixed(1)} MiB`)
    await waitFor('temporary files closed', () => (openTempFiles(temp).length === 0 ? true : undefined))
    assert.equal(gw.gateway.buffers.temp, 0)
    const metrics = await gw.gateway.metrics.registry.metrics()
    assert.match(metrics, /^portico_buffer_spills_total [1-9]/m)
    assert.match(metrics, /^portico_buffer_temp_bytes 0$/m)
    assert.match(metrics, /^portico_buffer_temp_files 0$/m)
  })
})

describe('buffering rules', () => {
  test('a client silent mid-body for body_idle gets 408 http_request_error; nothing reaches the upstream; the connection closes', async () => {
    const lab = await env.lab('ok')
    const cfg = oneUpstream([lab.url])
    cfg.listeners = [{ address: '127.0.0.1:0', timeouts: { body_idle: '300ms' } }]
    const gw = await env.gateway(cfg)
    const socket = net.connect(gw.port, '127.0.0.1')
    socket.write('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nX-Request-Id: idle-body\r\n\r\nabc')
    let text = ''
    socket.setEncoding('latin1')
    socket.on('data', (c: string) => { text += c })
    const t0 = performance.now()
    await new Promise((r) => socket.once('close', r))
    const waited = performance.now() - t0
    assert.match(text, /^HTTP\/1\.1 408 /)
    assert.match(text, /proxy-status: portico; error=http_request_error/i)
    assert.match(text, /connection: close/i)
    assert.ok(waited >= 250 && waited < 3000, `answered after ${waited.toFixed(0)}ms`)
    const r = await gw.record('idle-body')
    assert.equal(r.status, 408)
    assert.equal(r.error, 'http_request_error')
    assert.equal(r.endpoint, null)
    assert.equal(lab.requests, 0)
  })

  test('a body over max_request_body_size without Content-Length gets 413 while buffered, nothing sent upstream', async () => {
    const lab = await env.lab('ok')
    const cfg = oneUpstream([lab.url])
    cfg.listeners = [{ address: '127.0.0.1:0', max_request_body_size: '64KiB' }]
    const gw = await env.gateway(cfg)
    const reply = await send(gw.port, { method: 'POST', path: '/echo', body: Readable.from(zeroChunks(MiB, 16 * 1024)) })
    await expectExchange(gw, reply, { status: 413, error: 'http_request_denied', endpoint: null })
    assert.equal(lab.requests, 0)
  })

  test('with routes[].buffering.request off, the upstream gets the request while the client still sends', async () => {
    let headAt = 0
    const url = await env.upstream((req, res) => {
      headAt = performance.now()
      req.resume()
      req.on('end', () => res.end('ok'))
    })
    const cfg = oneUpstream([url])
    cfg.routes = [{ name: 'default', upstream: 'default', buffering: { request: false } }]
    const gw = await env.gateway(cfg)
    const socket = net.connect(gw.port, '127.0.0.1')
    env.defer(() => { socket.destroy() })
    socket.write('POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab')
    await waitFor('the upstream to get the request head', () => (headAt > 0 ? true : undefined))
    socket.write('cd')
    let text = ''
    socket.setEncoding('latin1')
    for await (const c of socket) {
      text += c as string
      if (text.includes('\r\n\r\nok')) break
    }
    assert.match(text, /^HTTP\/1\.1 200/)
  })

  test('at buffering.max_temp_file the rest of a body streams from the client and arrives intact', async () => {
    const lab = await env.lab('ok')
    const gw = await env.gateway(oneUpstream([lab.url], {}, { buffering: { temp_dir: join(dir, 'cap'), memory: '16KiB', max_temp_file: '256KiB' } }))
    const body = Buffer.alloc(4 * MiB)
    for (let i = 0; i < body.length; i += 4) body.writeUInt32LE(i, i)
    const reply = await send(gw.port, { method: 'POST', path: '/echo', body: Readable.from([body.subarray(0, MiB), body.subarray(MiB)]) })
    await expectExchange(gw, reply, { status: 200, error: null })
    assert.ok(reply.body.equals(body))
  })

  test('a reload applies new limits and buffering sizes to the requests that follow', async () => {
    const lab = await env.lab('ok')
    const input = oneUpstream([lab.url], {}, { buffering: { temp_dir: join(dir, 'reload') } })
    const gw = await env.gateway(input)
    assert.equal(gw.gateway.clients.max, null)
    await gw.gateway.reload(configSchema.parse({ ...input, limits: { max_requests_per_client_ip: 1 }, buffering: { temp_dir: join(dir, 'reload'), memory: '1KiB' } }))
    assert.equal(gw.gateway.buffers.limits.memory, 1024)
    const [a, b] = await Promise.all([send(gw.port, { path: '/delay/300' }), send(gw.port, { path: '/delay/300' })])
    assert.deepEqual([a.status, b.status].sort(), [200, 429])
    const echoed = await send(gw.port, { method: 'POST', path: '/echo', body: Buffer.alloc(8192, 'e') })
    assert.equal(echoed.status, 200)
    assert.equal(gw.gateway.buffers.spills, 1, 'an 8 KiB body spills past the reloaded 1 KiB memory share')
  })

  test('a buffering.temp_dir that cannot hold files stops the gateway from starting, naming the key', async () => {
    const file = join(dir, 'not-a-directory')
    writeFileSync(file, 'x')
    const config = configSchema.parse(oneUpstream(['http://127.0.0.1:9'], {}, { buffering: { temp_dir: join(file, 'sub') } }))
    const gw = new Gateway(config, { accessLog: memoryAccessLog() })
    await assert.rejects(gw.start(), /buffering\.temp_dir .*not-a-directory\/sub cannot hold temporary files/)
    await gw.stop(0)
  })
})

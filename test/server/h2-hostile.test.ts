/**
 * Hostile HTTP/2 clients over raw frames on a TLS listener: a `host` field naming another
 * authority than `:authority` (RFC 9113 §8.3.1), the rapid reset attack (CVE-2023-44487:
 * HEADERS then RST_STREAM, many times over, which opened one upstream connection per
 * cancelled stream until the pool was full), and a stream reset while its request is
 * proxied, logged as 499 (it was logged with status 0); a method in lower case, which
 * HTTP/2 carries as any token and which passed a deny list of TRACE as `trace`.
 */
import assert from 'node:assert/strict'
import http2 from 'node:http2'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import { test } from 'node:test'
import { parseProxyStatus } from '../../src/failures/proxy-status.ts'
import { makeCertificate } from '../../src/lab/index.ts'
import { testEnv, waitFor, type TestGateway } from '../helpers/gateway.ts'

const env = testEnv()

/** A loopback upstream counting requests and connections, answering after `delayMs`. */
async function countingUpstream(delayMs: number): Promise<{ url: string; requests: () => number; connections: () => number }> {
  let requests = 0
  let connections = 0
  const server = await env.server((_req, res) => {
    requests++
    setTimeout(() => res.end('ok'), delayMs)
  })
  server.on('connection', () => connections++)
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, requests: () => requests, connections: () => connections }
}

async function h2Gateway(url: string): Promise<TestGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'portico-h2-'))
  env.defer(() => rmSync(dir, { recursive: true, force: true }))
  const pair = makeCertificate({ commonName: 'a.test' })
  writeFileSync(join(dir, 'a.crt'), pair.cert)
  writeFileSync(join(dir, 'a.key'), pair.key)
  return env.gateway({
    listeners: [{ address: '127.0.0.1:0', tls: { certificates: [{ cert: join(dir, 'a.crt'), key: join(dir, 'a.key') }] } }],
    routes: [{ name: 'a', match: { host: 'a.test' }, upstream: 'app' }, { name: 'b', match: { host: 'b.test' }, upstream: 'app' }],
    upstreams: { app: { endpoints: [url] } },
  })
}

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9)
  head.writeUIntBE(payload.length, 0, 3)
  head[3] = type
  head[4] = flags
  head.writeUInt32BE(stream, 5)
  return Buffer.concat([head, payload])
}

/** HPACK (RFC 7541): `:method GET`, `:scheme https` (static table), `:path` and `:authority` as literals without indexing. */
function getHeaders(path: string, authority: string): Buffer {
  const literal = (index: number, value: string) => Buffer.concat([Buffer.from([index, value.length]), Buffer.from(value)])
  return Buffer.concat([Buffer.from([0x82, 0x87]), literal(0x04, path), literal(0x01, authority)])
}

const PREFACE = Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(4, 0, 0, Buffer.alloc(0))])
const END_STREAM = 0x1
const END_HEADERS = 0x4
const CANCEL = Buffer.from([0, 0, 0, 8])

test('HTTP/2: a host field naming another authority than :authority gets 400 invalid_host (RFC 9113 §8.3.1), nothing proxied', async () => {
  const up = await countingUpstream(0)
  const gw = await h2Gateway(up.url)
  const client = http2.connect(`https://127.0.0.1:${gw.port}`, { rejectUnauthorized: false })
  env.defer(() => { client.destroy() })
  const ask = (headers: http2.OutgoingHttpHeaders) => new Promise<{ status: number; headers: http2.IncomingHttpHeaders }>((resolve, reject) => {
    const req = client.request(headers)
    req.on('response', (h) => { req.resume(); req.on('end', () => resolve({ status: Number(h[':status']), headers: h })) })
    req.on('error', reject)
    req.end()
  })
  const r = await ask({ ':authority': 'a.test', host: 'b.test', ':path': '/' })
  assert.equal(r.status, 400)
  const own = parseProxyStatus(String(r.headers['proxy-status'])).at(-1)
  assert.equal(own?.params.error, 'http_request_error')
  assert.equal(own?.params.details, 'invalid_host')
  const rec = await gw.record(String(r.headers['x-request-id']))
  assert.equal(rec.status, 400)
  assert.equal(rec.route, null)
  assert.match(rec.details ?? '', /^invalid_host: host "b\.test" is not the :authority "a\.test"$/)
  assert.equal(up.requests(), 0)
  // The same names in another case, and :authority alone, are one authority.
  assert.equal((await ask({ ':authority': 'a.test', host: 'A.TEST', ':path': '/' })).status, 200)
  assert.equal((await ask({ ':authority': 'a.test', ':path': '/' })).status, 200)
  assert.equal(up.requests(), 2)
})

test('HTTP/2 rapid reset: 1000 streams opened and reset in the same reads take no upstream connection; the next client gets 200', async () => {
  const up = await countingUpstream(2000)
  const gw = await h2Gateway(up.url)
  const socket = tls.connect({ host: '127.0.0.1', port: gw.port, ALPNProtocols: ['h2'], servername: 'a.test', rejectUnauthorized: false })
  env.defer(() => { socket.destroy() })
  await new Promise((r) => socket.once('secureConnect', r))
  socket.on('error', () => {})
  socket.resume()
  const frames: Buffer[] = [PREFACE]
  for (let i = 0; i < 1000; i++) {
    const id = 2 * i + 1
    frames.push(frame(1, END_STREAM | END_HEADERS, id, getHeaders('/slow', 'a.test')), frame(3, 0, id, CANCEL))
  }
  await new Promise<void>((r) => socket.write(Buffer.concat(frames), () => r()))
  // A normal client afterwards: its request is served, and it is the only one the upstream saw.
  const client = http2.connect(`https://127.0.0.1:${gw.port}`, { rejectUnauthorized: false })
  env.defer(() => { client.destroy() })
  const status = await new Promise<number>((resolve, reject) => {
    const req = client.request({ ':authority': 'a.test', ':path': '/normal' })
    req.on('response', (h) => { req.resume(); req.on('end', () => resolve(Number(h[':status']))) })
    req.on('error', reject)
    req.end()
  })
  assert.equal(status, 200)
  assert.equal(up.requests(), 1, 'no upstream request for a stream reset in the read that opened it')
  assert.equal(up.connections(), 1)
  assert.equal(gw.records.filter((r) => r.status === 0).length, 0)
})

test('HTTP/2: a stream reset while its request is proxied is logged 499 client_closed (it was status 0)', async () => {
  let arrived!: () => void
  const inUpstream = new Promise<void>((r) => { arrived = r })
  const server = await env.server((_req, res) => { arrived(); setTimeout(() => res.end('late'), 3000) })
  const gw = await h2Gateway(`http://127.0.0.1:${(server.address() as { port: number }).port}`)
  const client = http2.connect(`https://127.0.0.1:${gw.port}`, { rejectUnauthorized: false })
  env.defer(() => { client.destroy() })
  const req = client.request({ ':authority': 'a.test', ':path': '/slow' })
  req.on('error', () => {})
  req.end()
  await inUpstream
  req.close(http2.constants.NGHTTP2_CANCEL)
  const [rec] = await gw.waitForRecords(1)
  assert.equal(rec.status, 499)
  assert.equal(rec.error, null)
  assert.equal(rec.route, 'a')
  assert.equal(rec.downstream, 'client_closed')
  await waitFor('the upstream exchange to end', () => (gw.gateway.runtime.pools.get('app')?.endpoints.every((e) => e.inFlight === 0) ? true : undefined))
})

test('HTTP/2: a method that is not upper case (trace, get, connect) gets 400 invalid_method; TRACE keeps its 405 (nginx: 400 "invalid method")', async () => {
  const up = await countingUpstream(0)
  const gw = await h2Gateway(up.url)
  const client = http2.connect(`https://127.0.0.1:${gw.port}`, { rejectUnauthorized: false })
  env.defer(() => { client.destroy() })
  const ask = (method: string) => new Promise<{ status: number; headers: http2.IncomingHttpHeaders }>((resolve, reject) => {
    const req = client.request({ ':method': method, ':authority': 'a.test', ':path': '/' })
    req.on('response', (h) => { req.resume(); req.on('end', () => resolve({ status: Number(h[':status']), headers: h })) })
    req.on('error', reject)
    req.end()
  })
  for (const method of ['trace', 'Trace', 'get', 'connect']) {
    const r = await ask(method)
    assert.equal(r.status, 400, method)
    const own = parseProxyStatus(String(r.headers['proxy-status'])).at(-1)
    assert.equal(own?.params.details, 'invalid_method')
    const rec = await gw.record(String(r.headers['x-request-id']))
    assert.equal(rec.status, 400)
    assert.equal(rec.error, 'http_request_error')
    assert.equal(rec.method, method)
    assert.match(rec.details ?? '', /^invalid_method: method ".*" is not upper case$/)
  }
  assert.equal((await ask('TRACE')).status, 405)
  assert.equal(up.requests(), 0, 'none reached the upstream')
  assert.equal((await ask('GET')).status, 200)
})

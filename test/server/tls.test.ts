// HTTPS listeners: HTTP/1.1 and HTTP/2 through the lifecycle driver, SNI, minimum TLS version,
// the redirect listener, and certificates swapped on reload without dropping an HTTP/2 session.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import { after, before, test } from 'node:test'
import { configSchema, type ConfigInput } from '../../src/config/schema.ts'
import { makeCA, makeCertificate, type KeyPair } from '../../src/lab/index.ts'
import { parseProxyStatus } from '../../src/failures/proxy-status.ts'
import { memoryAccessLog } from '../../src/observe/access-log.ts'
import { Gateway } from '../../src/server/gateway.ts'
import { certificateNames, nameMatches } from '../../src/server/tls.ts'
import { send } from '../helpers/client.ts'
import { testEnv } from '../helpers/gateway.ts'
import { AdminServer } from '../../src/admin/server.ts'

const env = testEnv()
let dir = ''
let ca: KeyPair
/** Certificate files by name: `a` (a.test, localhost, 127.0.0.1), `b` (*.b.test). */
const files: Record<string, { cert: string; key: string }> = {}

function writePair(name: string, pair: KeyPair): { cert: string; key: string } {
  const f = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) }
  writeFileSync(f.cert, pair.cert)
  writeFileSync(f.key, pair.key)
  return f
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'portico-tls-'))
  ca = makeCA()
  files.a = writePair('a', makeCertificate({ commonName: 'a.test', altNames: ['a.test', 'localhost', '127.0.0.1'], issuer: ca }))
  files.b = writePair('b', makeCertificate({ commonName: 'b.test', altNames: ['*.b.test'], issuer: ca }))
})
after(() => rmSync(dir, { recursive: true, force: true }))

/** What the upstream saw of the last request. */
interface Seen { headers: http.IncomingHttpHeaders; body: string; url: string }

/** An upstream that records each request and answers 200 with a small JSON body. */
async function recordingUpstream(): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = []
  const url = await env.upstream((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      seen.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), url: req.url ?? '' })
      res.writeHead(200, 'Fine', { 'content-type': 'application/json', 'x-upstream': 'yes' })
      res.end('{"ok":true}')
    })
  })
  return { url, seen }
}

function tlsConfig(upstream: string, tlsBlock: NonNullable<ConfigInput['listeners'][number]['tls']>): ConfigInput {
  return {
    listeners: [{ address: '127.0.0.1:0', tls: tlsBlock }],
    routes: [{ name: 'default', upstream: 'default' }],
    upstreams: { default: { endpoints: [upstream] } },
  }
}

/** Connects with TLS and returns the CN of the certificate the server presented. */
function peerCommonName(port: number, servername: string | undefined, extra: tls.ConnectionOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername, ca: ca.cert, rejectUnauthorized: false, ...extra }, () => {
      const cn = s.getPeerCertificate().subject.CN
      s.end()
      resolve(String(Array.isArray(cn) ? cn[0] : cn))
    })
    s.once('error', reject)
  })
}

function h2Request(client: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: string): Promise<{ headers: http2.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = client.request(headers, { endStream: body === undefined })
    const chunks: Buffer[] = []
    let head: http2.IncomingHttpHeaders = {}
    req.on('response', (h) => { head = h })
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => resolve({ headers: head, body: Buffer.concat(chunks).toString('utf8') }))
    req.on('error', reject)
    if (body !== undefined) req.end(body)
  })
}

function h2Connect(port: number, servername = 'a.test'): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const client = http2.connect(`https://127.0.0.1:${port}`, { ca: ca.cert, servername })
    client.once('connect', () => resolve(client))
    client.once('error', reject)
  })
}

test('certificate names come from subjectAltName, wildcards match one label', () => {
  assert.deepEqual(certificateNames(makeCertificate({ commonName: 'x.test', altNames: ['x.test', '*.y.test', '127.0.0.1'] }).cert), ['x.test', '*.y.test'])
  assert.equal(nameMatches('*.b.test', 'api.b.test'), true)
  assert.equal(nameMatches('*.b.test', 'b.test'), false)
  assert.equal(nameMatches('*.b.test', 'x.api.b.test'), false)
  assert.equal(nameMatches('a.test', 'A.Test'), true)
})

test('HTTPS over HTTP/1.1: relayed with Proxy-Status, the upstream sees the Host and X-Forwarded-Proto https', async () => {
  const up = await recordingUpstream()
  const gw = await env.gateway(tlsConfig(up.url, { certificates: [files.a] }))
  const reply = await new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: gw.port, path: '/one?x=1', servername: 'a.test', ca: ca.cert, headers: { host: 'a.test' }, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
    })
    req.on('error', reject)
    req.end()
  })
  assert.equal(reply.status, 200)
  assert.equal(reply.body, '{"ok":true}')
  assert.equal(parseProxyStatus(String(reply.headers['proxy-status'])).at(-1)?.params['received-status'], 200)
  assert.equal(up.seen[0].headers.host, 'a.test')
  assert.equal(up.seen[0].headers['x-forwarded-proto'], 'https')
  assert.equal(up.seen[0].url, '/one?x=1')
  const record = await gw.record(String(reply.headers['x-request-id']))
  assert.equal(record.protocol, 'HTTP/1.1')
  assert.equal(record.status, 200)
})

test('HTTPS over HTTP/2: :authority becomes Host, pseudo-headers stay on the client hop, bodies go both ways', async () => {
  const up = await recordingUpstream()
  const gw = await env.gateway(tlsConfig(up.url, { certificates: [files.a] }))
  const client = await h2Connect(gw.port)
  env.defer(() => { client.destroy() })
  assert.equal(client.alpnProtocol, 'h2')
  const get = await h2Request(client, { ':method': 'GET', ':path': '/two', ':authority': 'a.test', 'x-custom': 'kept' })
  assert.equal(get.headers[':status'], 200)
  assert.equal(get.headers['x-upstream'], 'yes')
  assert.equal(get.body, '{"ok":true}')
  const own = parseProxyStatus(String(get.headers['proxy-status'])).at(-1)
  assert.equal(own?.proxy, 'portico')
  assert.equal(own?.params['received-status'], 200)
  const seen = up.seen[0]
  assert.equal(seen.headers.host, 'a.test')
  assert.equal(seen.headers['x-forwarded-proto'], 'https')
  assert.equal(seen.headers['x-forwarded-host'], 'a.test')
  assert.equal(seen.headers['x-custom'], 'kept')
  assert.match(String(seen.headers.via), /^2 portico$/)
  assert.deepEqual(Object.keys(seen.headers).filter((k) => k.startsWith(':')), [])
  const post = await h2Request(client, { ':method': 'POST', ':path': '/three', ':authority': 'a.test', 'content-type': 'text/plain' }, 'hello over h2')
  assert.equal(post.headers[':status'], 200)
  assert.equal(up.seen[1].body, 'hello over h2')
  const record = await gw.record(String(get.headers['x-request-id']))
  assert.equal(record.host, 'a.test')
  assert.equal(record.protocol, 'HTTP/2.0')
})

test('HTTP/2 gateway errors carry Proxy-Status and no reason phrase', async () => {
  const up = await env.lab('refuse')
  const gw = await env.gateway({ ...tlsConfig(up.url, { certificates: [files.a] }), upstreams: { default: { endpoints: [up.url], retries: { attempts: 1 } } } })
  const client = await h2Connect(gw.port)
  env.defer(() => { client.destroy() })
  const r = await h2Request(client, { ':path': '/', ':authority': 'a.test' })
  assert.equal(r.headers[':status'], 502)
  assert.equal(parseProxyStatus(String(r.headers['proxy-status'])).at(-1)?.params.error, 'connection_refused')
  assert.equal((await gw.record(String(r.headers['x-request-id']))).error, 'connection_refused')
})

test('SNI picks the certificate by name (exact, wildcard), the first one otherwise', async () => {
  const up = await recordingUpstream()
  const gw = await env.gateway(tlsConfig(up.url, { certificates: [files.a, files.b] }))
  assert.equal(await peerCommonName(gw.port, 'a.test'), 'a.test')
  assert.equal(await peerCommonName(gw.port, 'api.b.test'), 'b.test')
  assert.equal(await peerCommonName(gw.port, 'API.B.TEST'), 'b.test')
  assert.equal(await peerCommonName(gw.port, 'unknown.test'), 'a.test')
  assert.equal(await peerCommonName(gw.port, undefined), 'a.test')
})

test('min_version TLSv1.3 refuses a TLSv1.2 client and accepts a TLSv1.3 one', async () => {
  const up = await recordingUpstream()
  const gw = await env.gateway(tlsConfig(up.url, { certificates: [files.a], min_version: 'TLSv1.3' }))
  await assert.rejects(peerCommonName(gw.port, 'a.test', { maxVersion: 'TLSv1.2' }), (err: NodeJS.ErrnoException) => {
    assert.match(String(err.code), /ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION|ERR_SSL_UNSUPPORTED_PROTOCOL|EPROTO|ECONNRESET/)
    return true
  })
  assert.equal(await peerCommonName(gw.port, 'a.test', { minVersion: 'TLSv1.3' }), 'a.test')
})

test('alpn [http/1.1] serves HTTPS without HTTP/2', async () => {
  const up = await recordingUpstream()
  const gw = await env.gateway(tlsConfig(up.url, { certificates: [files.a], alpn: ['http/1.1'] }))
  const proto = await new Promise<string | false>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: gw.port, servername: 'a.test', ca: ca.cert, ALPNProtocols: ['h2', 'http/1.1'] }, () => {
      resolve(s.alpnProtocol ?? false)
      s.end()
    })
    s.once('error', reject)
  })
  assert.equal(proto, 'http/1.1')
})

test('redirect_to_https answers 308 to the https URL with the same host, path and query', async () => {
  const gw = await env.gateway({
    listeners: [{ address: '127.0.0.1:0', redirect_to_https: 8443 }],
    routes: [{ upstream: 'default' }],
    upstreams: { default: { endpoints: ['http://127.0.0.1:9'] } },
  })
  const r = await send(gw.port, { method: 'POST', path: '/p/q?x=1', headers: { host: 'example.com:8080' }, body: 'x' })
  assert.equal(r.status, 308)
  assert.equal(r.headers.location, 'https://example.com:8443/p/q?x=1')
  const gw443 = await env.gateway({
    listeners: [{ address: '127.0.0.1:0', redirect_to_https: true }],
    routes: [{ upstream: 'default' }],
    upstreams: { default: { endpoints: ['http://127.0.0.1:9'] } },
  })
  const r2 = await send(gw443.port, { path: '/', headers: { host: 'example.com' } })
  assert.equal(r2.status, 308)
  assert.equal(r2.headers.location, 'https://example.com/')
  const r3 = await send(gw443.port, { path: '/ws', headers: { host: 'example.com', connection: 'Upgrade', upgrade: 'websocket' } })
  assert.equal(r3.status, 308)
  assert.equal(r3.headers.location, 'https://example.com/ws')
})

test('tls and redirect_to_https on one listener are refused by the schema', () => {
  const r = configSchema.safeParse({ ...tlsConfig('http://127.0.0.1:9', { certificates: [files.a] }), listeners: [{ address: '127.0.0.1:0', tls: { certificates: [files.a] }, redirect_to_https: true }] })
  assert.equal(r.success, false)
})

test('reload re-reads the certificates: an open HTTP/2 session keeps working, new connections get the new certificate', async () => {
  const up = await recordingUpstream()
  const reloadDir = mkdtempSync(join(tmpdir(), 'portico-tls-reload-'))
  env.defer(() => rmSync(reloadDir, { recursive: true, force: true }))
  const paths = { cert: join(reloadDir, 'site.crt'), key: join(reloadDir, 'site.key') }
  const first = makeCertificate({ commonName: 'first.a.test', altNames: ['a.test'], issuer: ca })
  writeFileSync(paths.cert, first.cert)
  writeFileSync(paths.key, first.key)
  const input = tlsConfig(up.url, { certificates: [paths] })
  const gw = await env.gateway(input)
  const client = await h2Connect(gw.port)
  env.defer(() => { client.destroy() })
  assert.equal((await h2Request(client, { ':path': '/before', ':authority': 'a.test' })).headers[':status'], 200)
  assert.equal(await peerCommonName(gw.port, 'a.test'), 'first.a.test')

  const second = makeCertificate({ commonName: 'second.a.test', altNames: ['a.test'], issuer: ca })
  writeFileSync(paths.cert, second.cert)
  writeFileSync(paths.key, second.key)
  const summary = await gw.gateway.reload(configSchema.parse(input))
  assert.deepEqual(summary.warnings, [])
  assert.equal(await peerCommonName(gw.port, 'a.test'), 'second.a.test')
  assert.equal(await peerCommonName(gw.port, undefined), 'second.a.test')
  assert.equal(client.closed || client.destroyed, false)
  assert.equal((await h2Request(client, { ':path': '/after', ':authority': 'a.test' })).headers[':status'], 200)

  // An unreadable certificate refuses the reload; the running one keeps serving.
  rmSync(paths.key)
  await assert.rejects(gw.gateway.reload(configSchema.parse(input)), /cannot read TLS certificate/)
  assert.equal(await peerCommonName(gw.port, 'a.test'), 'second.a.test')
})

test('stop closes an idle HTTP/2 session with GOAWAY instead of waiting for the drain timeout', async () => {
  const up = await recordingUpstream()
  const config = configSchema.parse(tlsConfig(up.url, { certificates: [files.a] }))
  const gateway = new Gateway(config, { accessLog: memoryAccessLog(), admin: (g) => new AdminServer(g) })
  await gateway.start()
  const client = await h2Connect(gateway.listeners[0].address.port)
  env.defer(() => { client.destroy() })
  assert.equal((await h2Request(client, { ':path': '/', ':authority': 'a.test' })).headers[':status'], 200)
  const goaway = new Promise<void>((resolve) => client.once('goaway', () => resolve()))
  const t0 = performance.now()
  await gateway.stop(5000)
  await goaway
  assert.ok(performance.now() - t0 < 2000, `stop took ${Math.round(performance.now() - t0)}ms`)
})

test('an HTTP/2 session idle for timeouts.keepalive gets GOAWAY; an open stream keeps it', async () => {
  const slow = await env.upstream((_req, res) => { setTimeout(() => res.end('late'), 400) })
  const input = tlsConfig(slow, { certificates: [files.a] })
  input.listeners[0].timeouts = { keepalive: '150ms' }
  const gw = await env.gateway(input)
  const client = await h2Connect(gw.port)
  env.defer(() => { client.destroy() })
  let goawayAt = 0
  client.once('goaway', () => { goawayAt = performance.now() })
  const t0 = performance.now()
  const r = await h2Request(client, { ':path': '/slow', ':authority': 'a.test' })
  assert.equal(r.headers[':status'], 200)
  assert.equal(r.body, 'late')
  assert.equal(goawayAt, 0, 'no GOAWAY while a stream was open')
  await new Promise<void>((resolve) => client.once('close', () => resolve()))
  assert.ok(goawayAt - t0 >= 400, `GOAWAY came ${Math.round(goawayAt - t0)}ms after the start`)
})

test('an HTTP/1.1 upgrade on an HTTPS listener reaches the upstream with X-Forwarded-Proto https', async () => {
  let seenProto: string | undefined
  const server = http.createServer((_req, res) => res.end())
  server.on('upgrade', (req, socket) => {
    seenProto = req.headers['x-forwarded-proto'] as string | undefined
    socket.end('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  env.defer(() => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections() }))
  const gw = await env.gateway(tlsConfig(`http://127.0.0.1:${(server.address() as { port: number }).port}`, { certificates: [files.a] }))
  const head = await new Promise<string>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: gw.port, servername: 'a.test', ca: ca.cert, ALPNProtocols: ['http/1.1'] }, () => {
      // WebSocket: the protocol routes allow by default (routes[].upgrades).
      s.write('GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n')
    })
    let data = ''
    s.setEncoding('utf8')
    s.on('data', (c: string) => {
      data += c
      if (data.includes('\r\n\r\n')) {
        s.destroy()
        resolve(data)
      }
    })
    s.once('error', reject)
  })
  assert.match(head, /^HTTP\/1\.1 101 /)
  assert.equal(seenProto, 'https')
})

test('an h2c upgrade on an HTTPS listener is not tunnelled: it reaches the upstream as a plain request', async () => {
  let upgrades = 0
  let plain: http.IncomingHttpHeaders | null = null
  const server = http.createServer((req, res) => { plain = req.headers; res.end('plain') })
  server.on('upgrade', (_req, socket) => {
    upgrades++
    socket.end('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  env.defer(() => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections() }))
  const gw = await env.gateway(tlsConfig(`http://127.0.0.1:${(server.address() as { port: number }).port}`, { certificates: [files.a] }))
  const head = await new Promise<string>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: gw.port, servername: 'a.test', ca: ca.cert, ALPNProtocols: ['http/1.1'] }, () => {
      s.write('GET /h HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n')
    })
    let data = ''
    s.setEncoding('utf8')
    s.on('data', (c: string) => {
      data += c
      if (data.includes('\r\n\r\n')) {
        s.destroy()
        resolve(data)
      }
    })
    s.once('error', reject)
  })
  assert.match(head, /^HTTP\/1\.1 200 /)
  assert.equal(upgrades, 0)
  assert.equal((plain as http.IncomingHttpHeaders | null)?.upgrade, undefined)
  assert.equal((plain as http.IncomingHttpHeaders | null)?.['x-forwarded-proto'], 'https')
})

test('HTTP/2: CONNECT and TRACE get 405 method_not_allowed with a log line; a dot-segment path is normalised', async () => {
  const up = await recordingUpstream()
  const gw = await env.gateway(tlsConfig(up.url, { certificates: [files.a] }))
  const client = await h2Connect(gw.port)
  env.defer(() => { client.close() })
  const ask = (headers: http2.OutgoingHttpHeaders) => new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
    const req = client.request(headers, { endStream: headers[':method'] !== 'CONNECT' })
    req.on('response', (h) => { resolve(h); req.close() })
    req.on('error', reject)
  })
  for (const headers of [{ ':method': 'CONNECT', ':authority': 'internal.test:22' }, { ':method': 'TRACE', ':path': '/', ':authority': 'a.test' }]) {
    const h = await ask(headers)
    assert.equal(h[':status'], 405, headers[':method'])
    assert.equal(parseProxyStatus(String(h['proxy-status'])).at(-1)?.params.details, 'method_not_allowed')
    const rec = await gw.record(String(h['x-request-id']))
    assert.equal(rec.status, 405)
    assert.equal(rec.error, 'http_request_denied')
    assert.equal(rec.method, headers[':method'])
  }
  const ok = await ask({ ':method': 'GET', ':path': '/a/%2e%2e/b', ':authority': 'a.test' })
  assert.equal(ok[':status'], 200)
  assert.equal(up.seen.at(-1)?.url, '/b')
})

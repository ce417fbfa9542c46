// TLS to https:// endpoints: a private CA, SNI override, client certificates, and each TLS
// failure named (tls_certificate_error / tls_protocol_error) with a readable reason.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import type { TLSSocket } from 'node:tls'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, mock, test } from 'node:test'
import type { ConfigInput } from '../../src/config/schema.ts'
import { makeCA, makeCertificate, type KeyPair } from '../../src/lab/index.ts'
import { logger } from '../../src/lib/logger.ts'
import { send } from '../helpers/client.ts'
import { expectExchange, ownProxyStatus } from '../helpers/expect.ts'
import { oneUpstream, testEnv, waitFor } from '../helpers/gateway.ts'
import { startDnsServer } from '../doctor/probes/dns-server.ts'

const env = testEnv()
let dir = ''
let ca: KeyPair
let caFile = ''

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'portico-upstream-tls-'))
  ca = makeCA()
  caFile = join(dir, 'ca.pem')
  writeFileSync(caFile, ca.cert)
})
after(() => rmSync(dir, { recursive: true, force: true }))

function write(name: string, text: string): string {
  const p = join(dir, name)
  writeFileSync(p, text)
  return p
}

/**
 * Starts an HTTPS upstream with `pair` on 127.0.0.1:0; answers 200 with the SNI name, client
 * certificate CN and Host it saw, and calls `onRequest` for each request (one that got
 * through the TLS handshake).
 */
async function httpsUpstream(pair: KeyPair, opts: https.ServerOptions = {}, onRequest?: () => void): Promise<number> {
  const server = https.createServer({ ...pair, ...opts }, (req, res) => {
    onRequest?.()
    const socket = req.socket as TLSSocket
    const client = socket.getPeerCertificate?.()
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ sni: socket.servername ?? null, client: client?.subject?.CN ?? null, host: req.headers.host }))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  env.defer(() => new Promise<void>((resolve) => {
    server.close(() => resolve())
    server.closeAllConnections()
  }))
  return (server.address() as { port: number }).port
}

/** One endpoint, one try, details exposed so the reason can be asserted. */
function config(endpoint: string, tls?: NonNullable<ConfigInput['upstreams'][string]['tls']>): ConfigInput {
  return oneUpstream([endpoint], { retries: { attempts: 1 }, ...(tls ? { tls } : {}) }, { expose_error_details: true })
}

test('https:// endpoint with a certificate of a private CA given in tls.ca: 200, TLS timing logged', async () => {
  const port = await httpsUpstream(makeCertificate({ commonName: 'localhost', altNames: ['localhost'], issuer: ca }))
  const gw = await env.gateway(config(`https://localhost:${port}`, { ca: caFile }))
  const reply = await send(gw.port, { path: '/' })
  const r = await expectExchange(gw, reply, { status: 200, error: null })
  assert.equal(reply.json().sni, 'localhost')
  assert.ok(typeof r.timings.tls_ms === 'number' && r.timings.tls_ms >= 0, `tls_ms ${r.timings.tls_ms}`)
})

test('tls.servername sets SNI and the name checked for an endpoint addressed by IP', async () => {
  const port = await httpsUpstream(makeCertificate({ commonName: 'api.internal', altNames: ['api.internal'], issuer: ca }))
  const gw = await env.gateway(config(`https://127.0.0.1:${port}`, { ca: caFile, servername: 'api.internal' }))
  const reply = await send(gw.port, { path: '/' })
  await expectExchange(gw, reply, { status: 200, error: null })
  assert.equal(reply.json().sni, 'api.internal')
})

test('tls.client_certificate is presented to an endpoint that requires one', async () => {
  const port = await httpsUpstream(makeCertificate({ commonName: 'localhost', altNames: ['localhost'], issuer: ca }), { requestCert: true, rejectUnauthorized: true, ca: ca.cert })
  const client = makeCertificate({ commonName: 'portico-client', altNames: ['portico-client'], issuer: ca })
  const gw = await env.gateway(config(`https://localhost:${port}`, { ca: caFile, client_certificate: { cert: write('client.crt', client.cert), key: write('client.key', client.key) } }))
  const reply = await send(gw.port, { path: '/' })
  await expectExchange(gw, reply, { status: 200, error: null })
  assert.equal(reply.json().client, 'portico-client')
})

test('expired certificate: 502 tls_certificate_error, "expired" in the details', async () => {
  const port = await httpsUpstream(makeCertificate({ commonName: 'localhost', altNames: ['localhost'], issuer: ca, expired: true }))
  const gw = await env.gateway(config(`https://localhost:${port}`, { ca: caFile }))
  const reply = await send(gw.port, { path: '/' })
  const r = await expectExchange(gw, reply, { status: 502, error: 'tls_certificate_error' })
  assert.match(String(ownProxyStatus(reply).details), /expired/)
  assert.match(String(r.details), /expired/)
})

test('certificate for another name: tls_certificate_error naming the mismatch', async () => {
  const port = await httpsUpstream(makeCertificate({ commonName: 'other.test', altNames: ['other.test'], issuer: ca }))
  const gw = await env.gateway(config(`https://localhost:${port}`, { ca: caFile }))
  const reply = await send(gw.port, { path: '/' })
  const r = await expectExchange(gw, reply, { status: 502, error: 'tls_certificate_error' })
  assert.match(String(r.details), /host name|altnames/i)
})

test('self-signed certificate without tls.ca: tls_certificate_error, "self-signed" in the details', async () => {
  const port = await httpsUpstream(makeCertificate({ commonName: 'localhost', altNames: ['localhost'] }))
  const gw = await env.gateway(config(`https://localhost:${port}`))
  const reply = await send(gw.port, { path: '/' })
  const r = await expectExchange(gw, reply, { status: 502, error: 'tls_certificate_error' })
  assert.match(String(r.details), /self-signed/)
})

test('https:// to a plain-HTTP endpoint: tls_protocol_error, "wrong version number" in the details', async () => {
  const lab = await env.lab('plain-behind-https')
  const gw = await env.gateway(config(lab.url))
  const reply = await send(gw.port, { path: '/' })
  const r = await expectExchange(gw, reply, { status: 502, error: 'tls_protocol_error' })
  assert.match(String(r.details), /wrong version number/)
})

test('insecure_skip_verify accepts a self-signed certificate and logs a warning at start', async () => {
  const warn = mock.method(logger, 'warn', () => {})
  env.defer(() => warn.mock.restore())
  const port = await httpsUpstream(makeCertificate({ commonName: 'localhost', altNames: ['localhost'] }))
  const gw = await env.gateway(config(`https://localhost:${port}`, { insecure_skip_verify: true }))
  const messages = warn.mock.calls.map((c) => c.arguments.map(String).join(' '))
  assert.ok(messages.some((m) => m.includes('upstreams.default.tls.insecure_skip_verify')), messages.join('\n'))
  await expectExchange(gw, await send(gw.port, { path: '/' }), { status: 200, error: null })
})

test('an endpoint given by a name resolved to an IP: SNI, certificate check and Host use the name, the log the address', async () => {
  const port = await httpsUpstream(makeCertificate({ commonName: 'svc.test', altNames: ['svc.test'], issuer: ca }))
  const dns = await startDnsServer({ 'svc.test': { a: ['127.0.0.1'], ttl: 60 } })
  env.defer(() => dns.close())
  const gw = await env.gateway(oneUpstream([`https://svc.test:${port}`], { tls: { ca: caFile }, retries: { attempts: 1 }, dns: { resolvers: [`127.0.0.1:${dns.port}`] } }, {
    routes: [{ name: 'default', upstream: 'default', preserve_host: false }],
  }))
  const reply = await send(gw.port, { path: '/' })
  await expectExchange(gw, reply, { status: 200, error: null, endpoint: `127.0.0.1:${port}` })
  assert.deepEqual(reply.json(), { sni: 'svc.test', client: null, host: `svc.test:${port}` })
})

test('an unreadable tls.ca is named when the gateway starts', async () => {
  await assert.rejects(env.gateway(config('https://localhost:1', { ca: join(dir, 'missing.pem') })), /cannot read upstream TLS CA bundle .*missing\.pem/)
})

test('health checks of https:// endpoints use the upstream tls settings', async () => {
  const pair = makeCertificate({ commonName: 'localhost', altNames: ['localhost'], issuer: ca })
  // One upstream each, so each count is the checks of one gateway that got through the TLS handshake.
  let trustedChecks = 0
  let untrustedChecks = 0
  const trustedPort = await httpsUpstream(pair, {}, () => { trustedChecks++ })
  const untrustedPort = await httpsUpstream(pair, {}, () => { untrustedChecks++ })
  const check = { path: '/', interval: '30ms', timeout: '500ms', healthy_threshold: 1, unhealthy_threshold: 1, jitter: '0ms' }
  const trusted = await env.gateway(oneUpstream([`https://localhost:${trustedPort}`], { tls: { ca: caFile }, health_check: check }))
  const untrusted = await env.gateway(oneUpstream([`https://localhost:${untrustedPort}`], { health_check: check }))
  const endpoint = (gw: typeof trusted) => gw.gateway.runtime.pools.get('default')?.endpoints[0]
  await waitFor('the untrusted endpoint to go down', () => (endpoint(untrusted)?.healthy === false ? true : undefined))
  assert.equal(endpoint(untrusted)?.downReason, 'tls_certificate_error')
  assert.equal(untrustedChecks, 0, 'no check got past the certificate verification without tls.ca')
  // Endpoints start healthy: only checks that passed the handshake with tls.ca, and one failure is enough to go down, show the settings were used.
  await waitFor('three checks of the trusted endpoint', () => (trustedChecks >= 3 ? true : undefined))
  assert.equal(endpoint(trusted)?.healthy, true)
  assert.equal(endpoint(trusted)?.downReason, null)
})

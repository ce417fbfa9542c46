import { test } from 'node:test'
import assert from 'node:assert/strict'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { makeCA, makeCertificate, startLab, type KeyPair } from '../../../src/lab/index.ts'
import { probeTls } from '../../../src/doctor/probes/tls.ts'
import { NGINX_DEFAULTS, PORTICO_DEFAULTS, targetFromUrl } from '../../../src/doctor/probes/target.ts'

async function httpsServer(t: import('node:test').TestContext, pair: KeyPair): Promise<number> {
  const server = https.createServer(pair, (_req, res) => res.end('ok'))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.after(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()) }))
  return (server.address() as AddressInfo).port
}

test('a valid certificate from a trusted CA: ok with days left', async (t) => {
  const ca = makeCA()
  const port = await httpsServer(t, makeCertificate({ commonName: 'localhost', altNames: ['localhost'], issuer: ca, days: 90 }))
  const { result, findings } = await probeTls(targetFromUrl(`https://localhost:${port}`, 'upstream', PORTICO_DEFAULTS), '127.0.0.1', { timeoutMs: 1000, ca: ca.cert })
  assert.equal(result.handshake, 'ok')
  assert.equal(result.authorized, true)
  assert.ok(result.certificate && result.certificate.daysLeft >= 88)
  assert.equal(findings[0].id, 'tls.ok')
})

test('an expired certificate is tls_certificate_error', async (t) => {
  const ca = makeCA()
  const port = await httpsServer(t, makeCertificate({ commonName: 'localhost', issuer: ca, expired: true }))
  const { findings } = await probeTls(targetFromUrl(`https://localhost:${port}`, 'upstream', PORTICO_DEFAULTS), '127.0.0.1', { timeoutMs: 1000, ca: ca.cert })
  assert.equal(findings[0].id, 'tls.expired')
  assert.equal(findings[0].cause, 'tls_certificate_error')
})

test('a self-signed certificate for another name: untrusted and name mismatch', async (t) => {
  const port = await httpsServer(t, makeCertificate({ commonName: 'other.example' }))
  const { findings } = await probeTls(targetFromUrl(`https://localhost:${port}`, 'upstream', PORTICO_DEFAULTS), '127.0.0.1', { timeoutMs: 1000 })
  assert.deepEqual(findings.map((f) => f.id), ['tls.untrusted', 'tls.name_mismatch'])
  assert.ok(findings.every((f) => f.cause === 'tls_certificate_error' && f.severity === 'critical'))
})

test('for nginx (proxy_ssl_verify off by default) a bad certificate is only a warning', async (t) => {
  const port = await httpsServer(t, makeCertificate({ commonName: 'other.example' }))
  const { findings } = await probeTls(targetFromUrl(`https://localhost:${port}`, 'nginx', NGINX_DEFAULTS), '127.0.0.1', { timeoutMs: 1000 })
  assert.ok(findings.every((f) => f.severity === 'warning'))
})

test('plain HTTP behind https:// is tls_protocol_error', async (t) => {
  const lab = await startLab('plain-behind-https')
  t.after(() => lab.close())
  const { result, findings } = await probeTls(targetFromUrl(lab.url, 'upstream', PORTICO_DEFAULTS), '127.0.0.1', { timeoutMs: 1000 })
  assert.equal(result.plainHttp, true)
  assert.equal(findings[0].id, 'tls.plain_http_on_https')
  assert.equal(findings[0].cause, 'tls_protocol_error')
  assert.match(findings[0].fix, /http:\/\/127\.0\.0\.1/)
})

test('TLS behind http:// is detected with a ClientHello', async (t) => {
  const lab = await startLab('tls')
  t.after(() => lab.close())
  const { findings } = await probeTls(targetFromUrl(lab.url, 'upstream', PORTICO_DEFAULTS), '127.0.0.1', { timeoutMs: 1000 })
  assert.equal(findings[0].id, 'tls.on_http')
  assert.equal(findings[0].cause, 'http_protocol_error')
})

test('a plain http:// backend is not flagged', async (t) => {
  const lab = await startLab('ok')
  t.after(() => lab.close())
  const { findings } = await probeTls(targetFromUrl(lab.url, 'upstream', PORTICO_DEFAULTS), '127.0.0.1', { timeoutMs: 1000 })
  assert.deepEqual(findings, [])
})

/**
 * Lab certificates verify against their CA and fail the way real ones do: expired, wrong name, untrusted.
 */
import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import net from 'node:net'
import tls from 'node:tls'
import { test } from 'node:test'
import { makeCA, makeCertificate, type KeyPair } from '../../src/lab/index.ts'

const ca = makeCA()
const names = ['localhost', '127.0.0.1']

/** Handshakes with a TLS server using `pair`; resolves 'ok' or the client's error code. */
async function handshake(pair: KeyPair, trust: string[], servername?: string): Promise<string> {
  const server = tls.createServer({ key: pair.key, cert: pair.cert }, (s) => s.end())
  server.on('tlsClientError', () => {})
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  try {
    return await new Promise<string>((resolve) => {
      const { port } = server.address() as net.AddressInfo
      const client = tls.connect({ host: '127.0.0.1', port, servername, ca: trust }, () => {
        client.destroy()
        resolve('ok')
      })
      client.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
    })
  } finally {
    await new Promise((resolve) => server.close(resolve))
  }
}

test('a certificate signed by the CA verifies by DNS name and by IP', async () => {
  const leaf = makeCertificate({ commonName: 'localhost', altNames: names, issuer: ca })
  assert.equal(await handshake(leaf, [ca.cert], 'localhost'), 'ok')
  assert.equal(await handshake(leaf, [ca.cert]), 'ok')
  const x509 = new X509Certificate(leaf.cert)
  assert.equal(x509.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1')
  assert.equal(x509.checkIssued(new X509Certificate(ca.cert)), true)
})

test('an expired certificate is rejected with CERT_HAS_EXPIRED', async () => {
  const leaf = makeCertificate({ commonName: 'localhost', altNames: names, issuer: ca, expired: true })
  assert.ok(new Date(new X509Certificate(leaf.cert).validTo).getTime() < Date.now())
  assert.equal(await handshake(leaf, [ca.cert], 'localhost'), 'CERT_HAS_EXPIRED')
})

test('a certificate for another name is rejected with ERR_TLS_CERT_ALTNAME_INVALID', async () => {
  const leaf = makeCertificate({ commonName: 'api.example.com', issuer: ca })
  assert.equal(await handshake(leaf, [ca.cert], 'localhost'), 'ERR_TLS_CERT_ALTNAME_INVALID')
})

test('self-signed: trusted when pinned, DEPTH_ZERO_SELF_SIGNED_CERT otherwise', async () => {
  const self = makeCertificate({ commonName: 'localhost', altNames: names })
  assert.equal(await handshake(self, [self.cert], 'localhost'), 'ok')
  assert.equal(await handshake(self, [ca.cert], 'localhost'), 'DEPTH_ZERO_SELF_SIGNED_CERT')
})

test('a certificate from another CA is untrusted', async () => {
  const leaf = makeCertificate({ commonName: 'localhost', altNames: names, issuer: makeCA('Other CA') })
  assert.equal(await handshake(leaf, [ca.cert], 'localhost'), 'UNABLE_TO_VERIFY_LEAF_SIGNATURE')
})

test('days sets the validity; the CA is a CA', () => {
  const leaf = makeCertificate({ commonName: 'localhost', days: 2, issuer: ca })
  const days = (new Date(new X509Certificate(leaf.cert).validTo).getTime() - Date.now()) / 86_400_000
  assert.ok(days > 1.9 && days <= 2, `valid for ${days} days`)
  assert.equal(new X509Certificate(ca.cert).ca, true)
  assert.equal(new X509Certificate(leaf.cert).ca, false)
})

/**
 * The ClientHello reader: real ClientHellos from Node's TLS client, captured on a raw
 * loopback socket, parsed whole and byte by byte; bytes that are not TLS; the peek that
 * puts the bytes back for the TLS server.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import net from 'node:net'
import tls from 'node:tls'
import { test } from 'node:test'
import { CLIENT_HELLO, parseClientHello, peekClientHello, type HelloSocket } from '../../src/server/client-hello.ts'

/** The first bytes a TLS client with `options` sends (its ClientHello record). */
async function capture(options: tls.ConnectionOptions): Promise<Buffer> {
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const got = once(server, 'connection') as Promise<[net.Socket]>
  const client = tls.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', rejectUnauthorized: false, ...options })
  client.on('error', () => {})
  const [socket] = await got
  let buf = Buffer.alloc(0)
  while (parseClientHello(buf) === 'incomplete') {
    const [chunk] = await once(socket, 'data') as [Buffer]
    buf = Buffer.concat([buf, chunk])
  }
  client.destroy()
  socket.destroy()
  server.close()
  return buf
}

const cases: Array<[string, tls.ConnectionOptions, { servername: string | null; ecdsa: boolean }]> = [
  ['TLS 1.3 with defaults and SNI', { servername: 'A.Test' }, { servername: 'a.test', ecdsa: true }],
  ['TLS 1.3 offering RSA signature algorithms only', { servername: 'a.test', minVersion: 'TLSv1.3', sigalgs: 'rsa_pss_rsae_sha256:rsa_pkcs1_sha256' }, { servername: 'a.test', ecdsa: false }],
  ['TLS 1.3 offering ECDSA signature algorithms only', { servername: 'a.test', minVersion: 'TLSv1.3', sigalgs: 'ecdsa_secp256r1_sha256' }, { servername: 'a.test', ecdsa: true }],
  ['TLS 1.2 with ECDHE-RSA suites only', { servername: 'a.test', maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256' }, { servername: 'a.test', ecdsa: false }],
  ['TLS 1.2 with an ECDHE-ECDSA suite', { servername: 'a.test', maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256' }, { servername: 'a.test', ecdsa: true }],
  ['no SNI (an IP address)', {}, { servername: null, ecdsa: true }],
]

for (const [what, options, expected] of cases) {
  test(`parseClientHello: ${what}`, async () => {
    const hello = await capture(options)
    assert.deepEqual(parseClientHello(hello), expected)
    // However the bytes arrive, a prefix is incomplete and the whole gives the same answer.
    for (const cut of [1, 4, 5, 40, hello.length - 1]) assert.equal(parseClientHello(hello.subarray(0, cut)), 'incomplete', `cut at ${cut}`)
  })
}

test('parseClientHello: bytes that are not a TLS ClientHello give null', () => {
  assert.equal(parseClientHello(Buffer.from('GET / HTTP/1.1\r\n\r\n')), null)
  assert.equal(parseClientHello(Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])), null, 'an alert record')
  assert.equal(parseClientHello(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00])), null, 'a ServerHello')
  assert.equal(parseClientHello(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x06, 0x01, 0x00, 0x00, 0x02, 0x03, 0x03])), null, 'truncated inside its record')
  assert.equal(parseClientHello(Buffer.alloc(0)), 'incomplete')
})

test('peekClientHello reads the hello, puts the bytes back, and gives up on a silent client', async () => {
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as net.AddressInfo).port
  const got = once(server, 'connection') as Promise<[HelloSocket]>
  const client = tls.connect({ port, host: '127.0.0.1', servername: 'peek.test', rejectUnauthorized: false })
  client.on('error', () => {})
  const [socket] = await got
  const hello = await new Promise((resolve) => peekClientHello(socket, 2000, resolve))
  assert.deepEqual(hello, { servername: 'peek.test', ecdsa: true })
  assert.deepEqual(socket[CLIENT_HELLO], hello)
  const again = socket.read() as Buffer
  assert.deepEqual(parseClientHello(again), hello, 'the bytes were put back whole')
  client.destroy()
  socket.destroy()

  const silent = net.connect(port, '127.0.0.1')
  const [quiet] = await once(server, 'connection') as [HelloSocket]
  const started = performance.now()
  assert.equal(await new Promise((resolve) => peekClientHello(quiet, 100, resolve)), null)
  assert.ok(performance.now() - started >= 90)
  silent.destroy()
  quiet.destroy()
  server.close()
})

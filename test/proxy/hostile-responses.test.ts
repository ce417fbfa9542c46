/**
 * Hostile upstream responses over raw sockets, compared with nginx 1.22: a status outside
 * 100–599 (nginx passes 600–999 on), a transfer coding other than chunked alone (Portico
 * removes chunked and would drop the other coding with the field: the client got gzip
 * bytes labelled as nothing), and an HTTP/1.0 response with Transfer-Encoding, after which
 * the upstream connection must not be reused (RFC 9112 §6.1). Each asserts the status,
 * Proxy-Status and the access log line.
 */
import assert from 'node:assert/strict'
import net from 'node:net'
import { test } from 'node:test'
import { parseProxyStatus } from '../../src/failures/proxy-status.ts'
import { testEnv, type TestGateway } from '../helpers/gateway.ts'
import { rawRequest } from '../helpers/raw.ts'

const env = testEnv()

/** A raw upstream answering every request head with `response`; counts connections. */
async function rawUpstream(response: string): Promise<{ url: string; connections: () => number }> {
  let connections = 0
  const sockets = new Set<net.Socket>()
  const server = net.createServer((s) => {
    connections++
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => {})
    let head = ''
    s.on('data', (d: Buffer) => {
      head += d.toString('latin1')
      while (head.includes('\r\n\r\n')) {
        head = head.slice(head.indexOf('\r\n\r\n') + 4)
        s.write(response)
      }
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  env.defer(() => new Promise<void>((r) => {
    for (const s of sockets) s.destroy()
    server.close(() => r())
  }))
  return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, connections: () => connections }
}

async function gatewayTo(url: string): Promise<TestGateway> {
  return env.gateway({ listeners: [{ address: '127.0.0.1:0' }], routes: [{ upstream: 'app' }], upstreams: { app: { endpoints: [url], retries: { attempts: 1 } } } })
}

async function expectProtocolError(gw: TestGateway, response: string, detail: RegExp): Promise<void> {
  const r = await rawRequest(gw.port, 'GET / HTTP/1.1\r\nHost: a.test\r\n\r\n')
  assert.equal(r.status, 502, r.bytes.toString('latin1').slice(0, 300))
  assert.equal(parseProxyStatus(r.get('proxy-status') ?? '').at(-1)?.params.error, 'http_protocol_error')
  const rec = await gw.record(r.get('x-request-id') ?? '')
  assert.equal(rec.status, 502)
  assert.equal(rec.error, 'http_protocol_error')
  assert.equal(rec.upstream_status, null, `${JSON.stringify(response.slice(0, 40))}: no valid response arrived`)
  assert.match(rec.details ?? '', detail)
}

test('a status outside 100-599 from the upstream: 502 http_protocol_error, not relayed (nginx relays 600 and 999)', async () => {
  for (const status of [600, 999]) {
    const response = `HTTP/1.1 ${status} Weird\r\nContent-Length: 2\r\n\r\nok`
    const gw = await gatewayTo((await rawUpstream(response)).url)
    await expectProtocolError(gw, response, /^HPE_INVALID_STATUS: invalid status line "HTTP\/1\.1 \d{3} Weird"$/)
  }
})

test('a transfer coding other than chunked alone from the upstream: 502, never relayed without its coding', async () => {
  for (const te of ['gzip', 'gzip, chunked', 'chunked, chunked']) {
    const response = `HTTP/1.1 200 OK\r\nTransfer-Encoding: ${te}\r\n\r\n3\r\nabc\r\n0\r\n\r\n`
    const gw = await gatewayTo((await rawUpstream(response)).url)
    await expectProtocolError(gw, response, /^HPE_INVALID_TRANSFER_ENCODING: response transfer coding ".*" is not chunked alone$/)
  }
})

test('an HTTP/1.0 response with Transfer-Encoding: chunked is relayed, and its connection is not reused (RFC 9112 §6.1)', async () => {
  const up = await rawUpstream('HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n')
  const gw = await gatewayTo(up.url)
  for (let i = 0; i < 2; i++) {
    const r = await rawRequest(gw.port, 'GET / HTTP/1.1\r\nHost: a.test\r\n\r\n')
    assert.equal(r.status, 200)
    assert.equal(r.body.toString(), 'ok')
    assert.equal(parseProxyStatus(r.get('proxy-status') ?? '').at(-1)?.params['received-status'], 200)
    const rec = await gw.record(r.get('x-request-id') ?? '')
    assert.equal(rec.status, 200)
    assert.equal(rec.connection_reused, false)
  }
  assert.equal(up.connections(), 2, 'one upstream connection per request')
})

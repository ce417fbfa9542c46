/**
 * Every lab server binds to loopback only, counts what it serves, and close() leaves nothing open.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import net from 'node:net'
import { test } from 'node:test'
import { startLab, type FaultMode } from '../../src/lab/index.ts'
import { exchange, GET, openTcpHandles } from './wire.ts'

const ALL: FaultMode[] = [
  'ok', 'refuse', 'connect-timeout', 'hang', 'reset-before-header', 'close-before-header', 'garbage', 'tls',
  'plain-behind-https', 'big-header', 'slow', 'slow-body', 'reset-mid-body', 'idle-mid-body', 'keepalive-race', 'dns-invalid',
]

test('close() destroys open sockets and leaves no TCP handle or worker behind', { timeout: 10_000 }, async () => {
  const before = openTcpHandles().length
  for (const mode of ALL) {
    const lab = await startLab(mode, { latencyMs: 5_000, chunkIntervalMs: 5_000 })
    // Leave a connection open in the server where there is one to leave.
    const client = mode === 'refuse' || mode === 'dns-invalid' || mode === 'connect-timeout'
      ? undefined
      : net.connect({ host: lab.host, port: lab.port })
    const clientClosed = client && new Promise((resolve) => client.once('close', resolve))
    if (client) {
      client.on('error', () => {})
      client.resume()
      await new Promise((resolve) => client.once('connect', resolve))
      client.write(GET)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    await lab.close()
    await clientClosed
    await lab.close() // idempotent
    assert.equal(openTcpHandles().length, before, `${mode} left ${openTcpHandles().join(', ')}`)
  }
})

for (const mode of ['hang', 'connect-timeout'] as const) {
  test(`a closed ${mode} listener refuses new connections (its worker closed it too)`, async () => {
    const lab = await startLab(mode)
    await lab.close()
    const x = await new Promise<string>((resolve) => {
      const s = net.connect({ host: lab.host, port: lab.port }, () => { s.destroy(); resolve('connected') })
      s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? ''))
    })
    assert.equal(x, 'ECONNREFUSED')
  })
}

test('non-loopback hosts are rejected before anything binds', async () => {
  for (const host of ['0.0.0.0', '10.0.0.1', '192.168.1.10', '::', 'localhost', 'example.com']) {
    await assert.rejects(startLab('ok', { host }), { code: 'ERR_LAB_HOST_NOT_LOOPBACK' }, host)
  }
  await assert.rejects(startLab('refuse', { host: '0.0.0.0' }), { code: 'ERR_LAB_HOST_NOT_LOOPBACK' })
  await assert.rejects(startLab('connect-timeout', { host: '0.0.0.0' }), { code: 'ERR_LAB_HOST_NOT_LOOPBACK' })
})

test('any address in 127.0.0.0/8 is accepted', async () => {
  const lab = await startLab('close-before-header', { host: '127.0.0.2' })
  try {
    assert.match(lab.url, /^http:\/\/127\.0\.0\.2:\d+$/)
    const x = await exchange(lab.port, GET, 1000, '127.0.0.2')
    assert.equal(x.outcome, 'end')
  } finally {
    await lab.close()
  }
})

test('an explicit port is used, and a taken one fails with EADDRINUSE', async () => {
  const first = await startLab('ok')
  try {
    await assert.rejects(startLab('ok', { port: first.port }), { code: 'EADDRINUSE' })
    await assert.rejects(startLab('connect-timeout', { port: first.port }), { code: 'EADDRINUSE' })
  } finally {
    await first.close()
  }
  const again = await startLab('ok', { port: first.port })
  try {
    assert.equal(again.port, first.port)
    const status = await new Promise<number>((resolve, reject) => {
      http.get(`${again.url}/healthz`, { agent: false }, (res) => { res.resume(); resolve(res.statusCode!) }).on('error', reject)
    })
    assert.equal(status, 200)
  } finally {
    await again.close()
  }
})

test('invalid options are refused with RangeError', async () => {
  await assert.rejects(startLab('big-header', { headerBytes: -1 }), RangeError)
  await assert.rejects(startLab('slow', { latencyMs: { p50: 100, p99: 10 } }), RangeError)
  await assert.rejects(startLab('ok', { port: 70_000 }), RangeError)
  await assert.rejects(startLab('nope' as FaultMode), RangeError)
})

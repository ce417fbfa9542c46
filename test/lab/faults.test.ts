/**
 * Each fault mode, hit directly with node:net, node:http and node:https, does what its name says.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import { after, describe, test } from 'node:test'
import { GARBAGE, startLab, TLS_ALERT, type FaultMode, type LabOptions, type LabServer } from '../../src/lab/index.ts'
import { exchange, GET, type Exchange } from './wire.ts'

const labs: LabServer[] = []
after(() => Promise.all(labs.map((l) => l.close())))

async function lab(mode: FaultMode, options?: LabOptions): Promise<LabServer> {
  const l = await startLab(mode, options)
  labs.push(l)
  return l
}

/** Outcome of one http.get: the response head (if any), the body bytes read, and how it ended. */
interface Fetched {
  status?: number
  headers?: http.IncomingHttpHeaders
  received: number
  error?: string
  message?: string
  openAfterMs?: number
}

/** GETs `url` with a fresh connection; gives up with `openAfterMs` set when nothing more happens for `idleMs`. */
function fetch(url: string, idleMs = 1000, options: https.RequestOptions = {}): Promise<Fetched> {
  return new Promise((resolve) => {
    const out: Fetched = { received: 0 }
    const mod = url.startsWith('https:') ? https : http
    const req = mod.get(url, { agent: false, ...options }, (res) => {
      out.status = res.statusCode
      out.headers = res.headers
      res.on('data', (c: Buffer) => { out.received += c.length })
      res.on('end', () => resolve(out))
      res.on('error', (err: NodeJS.ErrnoException) => resolve({ ...out, error: err.code ?? err.message }))
    })
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ ...out, error: err.code ?? err.message, message: err.message }))
    let timer = setTimeout(give, idleMs)
    function give(): void {
      resolve({ ...out, openAfterMs: idleMs })
      req.destroy()
    }
    req.on('response', (res) => res.on('data', () => { clearTimeout(timer); timer = setTimeout(give, idleMs) }))
    req.on('close', () => clearTimeout(timer))
  })
}

describe('fault modes', () => {
  test('refuse: a dead port refuses connections', async () => {
    const l = await lab('refuse')
    const err = await new Promise<NodeJS.ErrnoException>((resolve, reject) => {
      const s = net.connect({ host: l.host, port: l.port }, () => reject(new Error('connected to a refuse lab')))
      s.on('error', resolve)
    })
    assert.equal(err.code, 'ECONNREFUSED')
    assert.match(l.url, /^http:\/\/127\.0\.0\.1:\d+$/)
  })

  test('connect-timeout: a fresh connect does not complete within 300 ms', async () => {
    const l = await lab('connect-timeout')
    const s = net.connect({ host: l.host, port: l.port })
    const outcome = await new Promise<string>((resolve) => {
      const t = setTimeout(() => resolve('pending'), 300)
      s.once('connect', () => { clearTimeout(t); resolve('connected') })
      s.once('error', (e: NodeJS.ErrnoException) => { clearTimeout(t); resolve(e.code ?? 'error') })
    })
    s.destroy()
    assert.equal(outcome, 'pending')
    assert.equal(l.connections, 0)
  })

  // Before-header faults: what a client sees after sending a request, within the wait.
  const beforeHeader: [FaultMode, string, Exchange['outcome'], string | undefined, number][] = [
    ['hang', 'no byte, the socket stays open', 'open', undefined, 300],
    ['reset-before-header', 'ECONNRESET without a byte', 'error', 'ECONNRESET', 1000],
    ['close-before-header', 'EOF without a byte', 'end', undefined, 1000],
  ]
  for (const [mode, what, outcome, code, waitMs] of beforeHeader) {
    test(`${mode}: ${what}`, async () => {
      const l = await lab(mode)
      const x = await exchange(l.port, GET, waitMs)
      assert.equal(x.outcome, outcome)
      assert.equal(x.code, code)
      assert.equal(x.bytes.length, 0)
      assert.equal(l.requests, 1)
    })
  }

  test('reset-before-header waits for the end of the request head', async () => {
    const l = await lab('reset-before-header')
    const x = await exchange(l.port, 'GET / HTTP/1.1\r\nHost: lab\r\n', 300)
    assert.equal(x.outcome, 'open')
    assert.equal(l.requests, 0)
  })

  test('garbage: answers with bytes that are not HTTP', async () => {
    const l = await lab('garbage')
    const x = await exchange(l.port, GET, 1000)
    assert.equal(x.bytes.toString(), GARBAGE)
    assert.doesNotMatch(x.bytes.toString(), /^HTTP\//)
    const f = await fetch(l.url)
    assert.equal(f.error, 'HPE_INVALID_CONSTANT')
  })

  test('big-header: the response header section is 64 KiB by default', async () => {
    const l = await lab('big-header')
    const x = await exchange(l.port, GET, 1000)
    const end = x.bytes.indexOf('\r\n\r\n')
    assert.ok(end > 0, 'header section ends')
    assert.equal(end + 4, 64 * 1024)
    assert.ok(end + 4 > 16 * 1024)
    assert.match(x.bytes.toString('latin1', 0, 17), /^HTTP\/1\.1 200 OK\r\n/)
    // Node's default limit (16 KiB) rejects it, as a proxy with a smaller buffer would.
    assert.equal((await fetch(l.url)).error, 'HPE_HEADER_OVERFLOW')
  })

  test('big-header: headerBytes sets the exact size, small enough to parse', async () => {
    const l = await lab('big-header', { headerBytes: 4000 })
    const x = await exchange(l.port, GET, 1000)
    assert.equal(x.bytes.indexOf('\r\n\r\n') + 4, 4000)
    const f = await fetch(l.url)
    assert.equal(f.status, 200)
    assert.equal(f.received, 3)
  })

  test('reset-mid-body: a 200 with part of its body, then ECONNRESET', async () => {
    const l = await lab('reset-mid-body')
    const f = await fetch(l.url)
    assert.equal(f.status, 200)
    assert.equal(f.headers?.['content-length'], String(1024 * 1024))
    assert.ok(f.received > 0 && f.received < 1024 * 1024, `received ${f.received}`)
    assert.ok(f.error === 'ECONNRESET' || f.error === 'aborted', `error ${f.error}`)
  })

  test('idle-mid-body: a 200 with part of its body, then silence on an open socket', async () => {
    const l = await lab('idle-mid-body', { bodyBytes: 10_000 })
    const f = await fetch(l.url, 300)
    assert.equal(f.status, 200)
    assert.equal(f.headers?.['content-length'], '10000')
    assert.equal(f.received, 5000)
    assert.equal(f.openAfterMs, 300)
    assert.equal(f.error, undefined)
  })

  test('tls: plain HTTP gets a TLS alert, HTTPS gets the healthy routes', async () => {
    const l = await lab('tls')
    assert.match(l.url, /^http:\/\//)
    const x = await exchange(l.port, GET, 1000)
    assert.deepEqual(x.bytes, TLS_ALERT)
    assert.equal((await fetch(l.url)).error, 'HPE_INVALID_CONSTANT')
    const secure = await fetch(l.url.replace('http:', 'https:') + '/healthz', 1000, { rejectUnauthorized: false })
    assert.equal(secure.status, 200)
    assert.equal(l.requests, 3)
  })

  test('plain-behind-https: a TLS client meets plain HTTP (wrong version number)', async () => {
    const l = await lab('plain-behind-https')
    assert.match(l.url, /^https:\/\//)
    const f = await fetch(l.url, 1000, { rejectUnauthorized: false })
    assert.equal(f.error, 'EPROTO')
    assert.match(f.message ?? '', /wrong version number/)
    assert.equal((await fetch(l.url.replace('https:', 'http:') + '/healthz')).status, 200)
  })

  test('slow: a fixed latency delays the answer', async () => {
    const l = await lab('slow', { latencyMs: 150 })
    const t0 = performance.now()
    const f = await fetch(l.url)
    assert.equal(f.status, 200)
    assert.ok(performance.now() - t0 >= 140)
  })

  test('slow-body: the first chunk at once, the rest dripped', async () => {
    const l = await lab('slow-body', { bodyBytes: 4096, chunkIntervalMs: 50 })
    const t0 = performance.now()
    const f = await fetch(l.url)
    const ms = performance.now() - t0
    assert.equal(f.status, 200)
    assert.equal(f.received, 4096)
    // 1 KiB now, 3 more at 50 ms intervals.
    assert.ok(ms >= 140 && ms < 1000, `took ${ms} ms`)
  })

  test('dns-invalid: a .invalid URL and no server', async () => {
    const l = await lab('dns-invalid')
    const url = new URL(l.url)
    assert.match(url.hostname, /^portico-lab-[0-9a-f]{12}\.invalid$/)
    assert.match(l.url, /:80$/)
    assert.equal(l.port, 80)
    assert.notEqual((await lab('dns-invalid')).url, l.url, 'names are random')
  })
})

/**
 * The healthy 'ok' upstream: every route, 100-continue, HEAD and Connection: close.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import http from 'node:http'
import { after, before, test } from 'node:test'
import { startLab, type LabServer } from '../../src/lab/index.ts'

let lab: LabServer
before(async () => { lab = await startLab('ok', { name: 'alpha' }) })
after(() => lab.close())

interface Reply {
  status: number
  headers: http.IncomingHttpHeaders
  trailers: NodeJS.Dict<string>
  body: Buffer
  informational: number[]
}

/** One request on a fresh connection; `body` is written then the request ended. */
function request(path: string, options: http.RequestOptions = {}, body?: string | Buffer): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const informational: number[] = []
    const req = http.request(`${lab.url}${path}`, { agent: false, ...options }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, trailers: res.trailers, body: Buffer.concat(chunks), informational }))
    })
    req.on('information', (info) => informational.push(info.statusCode))
    req.on('error', reject)
    req.end(body)
  })
}

test('any other path answers 200 JSON with the request as seen, and the instance name', async () => {
  const r = await request('/some/path?q=1', { headers: { 'x-forwarded-for': '203.0.113.9' } })
  assert.equal(r.status, 200)
  assert.equal(r.headers['x-lab-server'], 'alpha')
  const seen = JSON.parse(r.body.toString())
  assert.equal(seen.server, 'alpha')
  assert.equal(seen.method, 'GET')
  assert.equal(seen.url, '/some/path?q=1')
  assert.equal(seen.headers['x-forwarded-for'], '203.0.113.9')
})

test('the default name is mode-port', async () => {
  const other = await startLab('ok')
  try {
    const seen = await new Promise<{ server: string }>((resolve, reject) => {
      http.get(other.url, { agent: false }, (res) => {
        let text = ''
        res.on('data', (c) => { text += c })
        res.on('end', () => resolve(JSON.parse(text)))
      }).on('error', reject)
    })
    assert.equal(seen.server, `ok-${other.port}`)
  } finally {
    await other.close()
  }
})

test('POST /echo returns a Content-Length body unchanged', async () => {
  const body = Buffer.alloc(200_000, 'e')
  const r = await request('/echo', { method: 'POST', headers: { 'content-type': 'text/plain', 'content-length': body.length } }, body)
  assert.equal(r.headers['content-length'], String(body.length))
  assert.equal(r.headers['content-type'], 'text/plain')
  assert.deepEqual(r.body, body)
})

test('PUT /echo streams a chunked body back before the request ends', { timeout: 5000 }, async () => {
  await new Promise<void>((resolve, reject) => {
    const req = http.request(`${lab.url}/echo`, { method: 'PUT', agent: false }, (res) => {
      assert.equal(res.headers['transfer-encoding'], 'chunked')
      let text = ''
      res.on('data', (c: Buffer) => {
        text += c
        // The first piece came back while the request is still open: nothing is buffered.
        if (text === 'first|') req.end('second')
      })
      res.on('end', () => {
        try {
          assert.equal(text, 'first|second')
          resolve()
        } catch (err) { reject(err) }
      })
    })
    req.on('error', reject)
    req.write('first|')
  })
})

test('Expect: 100-continue gets 100 Continue before the body is sent', { timeout: 5000 }, async () => {
  const r = await new Promise<Reply>((resolve, reject) => {
    const informational: number[] = []
    const req = http.request(`${lab.url}/echo`, { method: 'POST', agent: false, headers: { expect: '100-continue', 'content-length': 5 } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, trailers: {}, body: Buffer.concat(chunks), informational }))
    })
    req.on('continue', () => { informational.push(100); req.end('hello') })
    req.on('error', reject)
  })
  assert.deepEqual(r.informational, [100])
  assert.equal(r.body.toString(), 'hello')
})

test('GET /bytes/N streams N bytes with Content-Length', async () => {
  const n = 8 * 1024 * 1024 + 123
  const r = await request(`/bytes/${n}`)
  assert.equal(r.headers['content-length'], String(n))
  assert.equal(r.body.length, n)
})

test('GET /bytes/N waits for a slow reader (backpressure)', { timeout: 5000 }, async () => {
  const n = 16 * 1024 * 1024
  await new Promise<void>((resolve, reject) => {
    http.get(`${lab.url}/bytes/${n}`, { agent: false }, (res) => {
      res.pause()
      // Unread, the body stops at what the socket buffers hold, far below 16 MiB.
      setTimeout(() => {
        try {
          assert.ok(res.socket.bytesRead < n / 2, `read ${res.socket.bytesRead} bytes while paused`)
          let got = 0
          res.on('data', (c: Buffer) => { got += c.length })
          res.on('end', () => (got === n ? resolve() : reject(new Error(`got ${got}`))))
          res.resume()
        } catch (err) { reject(err) }
      }, 100)
    }).on('error', reject)
  })
})

test('HEAD /bytes/N has the length and no body', async () => {
  const r = await request('/bytes/1000', { method: 'HEAD' })
  assert.equal(r.status, 200)
  assert.equal(r.headers['content-length'], '1000')
  assert.equal(r.body.length, 0)
})

test('GET /delay/MS answers after MS milliseconds', async () => {
  const t0 = performance.now()
  const r = await request('/delay/120')
  assert.equal(r.status, 200)
  assert.ok(performance.now() - t0 >= 110)
})

test('GET /status/CODE answers with that status; bad codes get 400', async () => {
  assert.equal((await request('/status/503')).status, 503)
  assert.equal((await request('/status/204')).status, 204)
  assert.equal((await request('/status/42')).status, 400)
  assert.equal((await request('/status/abc')).status, 400)
})

test('GET /trailers sends a chunked body and an x-checksum trailer', async () => {
  const r = await request('/trailers')
  assert.equal(r.headers['transfer-encoding'], 'chunked')
  assert.equal(r.headers.trailer, 'x-checksum')
  assert.equal(r.trailers['x-checksum'], createHash('sha256').update(r.body).digest('hex'))
})

test('GET /early-hints sends 103 then 200', async () => {
  const r = await request('/early-hints')
  assert.deepEqual(r.informational, [103])
  assert.equal(r.status, 200)
})

test('GET /healthz answers ok', async () => {
  const r = await request('/healthz')
  assert.equal(r.status, 200)
  assert.equal(r.body.toString(), 'ok\n')
})

test('Connection: close is honoured', async () => {
  const closed = await new Promise<boolean>((resolve, reject) => {
    const agent = new http.Agent({ keepAlive: true })
    http.get(lab.url, { agent, headers: { connection: 'close' } }, (res) => {
      assert.equal(res.headers.connection, 'close')
      res.resume()
      res.socket.once('close', () => { agent.destroy(); resolve(true) })
    }).on('error', reject)
  })
  assert.ok(closed)
})

test('keep-alive connections are reused and counted once', async () => {
  const other = await startLab('ok')
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  try {
    for (let i = 0; i < 3; i++) {
      await new Promise<void>((resolve, reject) => {
        http.get(`${other.url}/healthz`, { agent }, (res) => { res.resume(); res.on('end', resolve) }).on('error', reject)
      })
    }
    assert.equal(other.connections, 1)
    assert.equal(other.requests, 3)
  } finally {
    agent.destroy()
    await other.close()
  }
})

// FastCGI probe against a small FastCGI responder made here, an HTTP server, and nothing at all.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { probeFastcgi } from '../../../src/doctor/probes/fastcgi.ts'
import { NGINX_DEFAULTS, targetFromUrl } from '../../../src/doctor/probes/target.ts'
import { startLab } from '../../../src/lab/index.ts'

/** A FastCGI responder: answers FCGI_GET_VALUES, and a request with `Status: <status>` and the SCRIPT_NAME it got. */
async function responder(status: number): Promise<{ port: number; scripts: string[]; close(): Promise<void> }> {
  const scripts: string[] = []
  const rec = (type: number, id: number, body: Buffer) => {
    const h = Buffer.alloc(8)
    h.writeUInt8(1, 0); h.writeUInt8(type, 1); h.writeUInt16BE(id, 2); h.writeUInt16BE(body.length, 4)
    return Buffer.concat([h, body])
  }
  const server = net.createServer((s) => {
    let buf = Buffer.alloc(0)
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      while (buf.length >= 8 && buf.length >= 8 + buf.readUInt16BE(4) + buf[6]) {
        const type = buf[1]
        const len = buf.readUInt16BE(4)
        const content = buf.subarray(8, 8 + len)
        buf = buf.subarray(8 + len + buf[6])
        if (type === 9) s.end(rec(10, 0, Buffer.from([14, 1, ...Buffer.from('FCGI_MAX_CONNS'), 0x31])))
        if (type === 4 && len > 0) {
          const at = content.indexOf('SCRIPT_NAME')
          if (at > 0) scripts.push(content.subarray(at + 11, at + 11 + content[at - 1]).toString())
        }
        if (type === 5 && len === 0) s.end(Buffer.concat([rec(6, 1, Buffer.from(`Status: ${status} X\r\nContent-Type: text/plain\r\n\r\npong`)), rec(3, 1, Buffer.alloc(8))]))
      }
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { port: (server.address() as net.AddressInfo).port, scripts, close: () => new Promise((r) => server.close(() => r())) }
}

function target(port: number, ping?: string) {
  return targetFromUrl(`http://127.0.0.1:${port}/`, 'nginx', NGINX_DEFAULTS, { protocol: 'fastcgi', pass: `fastcgi_pass 127.0.0.1:${port}`, location: '`location = /ping` block (nginx.conf:3)', ...(ping ? { fastcgiPing: ping } : {}) })
}

test('a FastCGI server answers FCGI_GET_VALUES, and the ping path of an exact location', async (t) => {
  const fpm = await responder(200)
  t.after(() => fpm.close())
  const plain = await probeFastcgi(target(fpm.port), '127.0.0.1', { timeoutMs: 1000 })
  assert.equal(plain.result.outcome, 'ok')
  assert.equal(plain.findings[0].id, 'fastcgi.ok')
  const ping = await probeFastcgi(target(fpm.port, '/ping'), '127.0.0.1', { timeoutMs: 1000 })
  assert.equal(ping.result.status, 200)
  assert.deepEqual(fpm.scripts, ['/ping'])
})

test('the ping path answering 503 is the application failing', async (t) => {
  const fpm = await responder(503)
  t.after(() => fpm.close())
  const { findings } = await probeFastcgi(target(fpm.port, '/ping'), '127.0.0.1', { timeoutMs: 1000 })
  assert.equal(findings[0].id, 'fastcgi.status')
})

test('an HTTP server behind fastcgi_pass: http_protocol_error, fix says proxy_pass', async (t) => {
  const lab = await startLab('ok')
  t.after(() => lab.close())
  const { result, findings } = await probeFastcgi(target(lab.port), '127.0.0.1', { timeoutMs: 1000 })
  assert.equal(result.outcome, 'not_fastcgi')
  assert.equal(findings[0].cause, 'http_protocol_error')
  assert.match(findings[0].fix, /`proxy_pass http:\/\/127\.0\.0\.1:\d+;` instead of `fastcgi_pass`/)
})

test('a server that accepts and never answers: http_response_timeout within the bound', async (t) => {
  const lab = await startLab('hang')
  t.after(() => lab.close())
  const t0 = performance.now()
  const { findings } = await probeFastcgi(target(lab.port), '127.0.0.1', { timeoutMs: 300 })
  assert.ok(performance.now() - t0 < 1500)
  assert.equal(findings[0].cause, 'http_response_timeout')
  assert.match(findings[0].fix, /fastcgi_read_timeout/)
})

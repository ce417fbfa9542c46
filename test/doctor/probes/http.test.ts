import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startLab } from '../../../src/lab/index.ts'
import type { FaultMode } from '../../../src/lab/index.ts'
import { latencyStats, probeHttp } from '../../../src/doctor/probes/http.ts'
import { PORTICO_DEFAULTS, targetFromUrl, type ProxySettings } from '../../../src/doctor/probes/target.ts'

// The probe's own timeout is generous where a sample must succeed: a loaded machine can stall a loopback answer.
async function run(t: import('node:test').TestContext, mode: FaultMode, proxy: Partial<ProxySettings> = {}, labOptions = {}, timeoutMs = 400) {
  const lab = await startLab(mode, labOptions)
  t.after(() => lab.close())
  return probeHttp(targetFromUrl(lab.url, 'upstream', { ...PORTICO_DEFAULTS, ...proxy }), '127.0.0.1', { timeoutMs, samples: 3 })
}

test('percentiles are nearest-rank', () => {
  const s = latencyStats([5, 1, 4, 2, 3, 6, 7, 8, 9, 10])
  assert.deepEqual(s, { count: 10, p50: 5, p90: 9, p99: 10, max: 10 })
})

test('a healthy backend: status, header size, latency distribution', async (t) => {
  const { result, findings } = await run(t, 'ok', {}, {}, 3000)
  assert.equal(result.head.status, 200)
  assert.ok((result.head.headerBytes ?? 0) > 20)
  assert.equal(result.samples.length, 3)
  assert.equal(result.latency?.count, 3)
  assert.ok(result.samples[0].bodySha256)
  assert.equal(findings[0].id, 'http.ok')
})

const expectations: [FaultMode, string, string][] = [
  ['hang', 'http.no_header', 'http_response_timeout'],
  ['reset-before-header', 'http.terminated', 'connection_terminated'],
  ['close-before-header', 'http.terminated', 'connection_terminated'],
  ['garbage', 'http.garbage', 'http_protocol_error'],
  ['tls', 'http.tls_on_http', 'http_protocol_error'],
]
for (const [mode, id, cause] of expectations) {
  test(`${mode} → ${cause}`, async (t) => {
    const { findings } = await run(t, mode)
    assert.equal(findings[0].id, id)
    assert.equal(findings[0].cause, cause)
  })
}

test('a header section above the proxy limit → http_response_header_section_size', async (t) => {
  const { result, findings } = await run(t, 'big-header')
  assert.ok((result.head.headerBytes ?? 0) >= 65536)
  assert.equal(findings[0].cause, 'http_response_header_section_size')
  assert.match(findings[0].fix, /max_response_header_size: 128KiB/)
})

test('p99 above the first-byte timeout explains 504s', async (t) => {
  const { result, findings } = await run(t, 'slow', { responseHeaderTimeoutMs: 60 }, { latencyMs: 80 }, 3000)
  assert.ok(result.latency && result.latency.p99 >= 60)
  assert.equal(findings[0].id, 'http.slow')
  assert.equal(findings[0].cause, 'http_response_timeout')
  assert.match(findings[0].fix, /timeouts\.response_header/)
})

test('p99 close to the first-byte timeout is a warning', async (t) => {
  // 400 ms against 480 ms: 83 %, with 80 ms for a loaded machine to add before a sample crosses the timeout.
  const { findings } = await run(t, 'slow', { responseHeaderTimeoutMs: 480 }, { latencyMs: 400 }, 3000)
  assert.equal(findings[0].id, 'http.slow_near')
  assert.equal(findings[0].severity, 'warning')
})

test('a body reset mid-way: http_response_incomplete with the bytes received of the Content-Length', async (t) => {
  const { result, findings } = await run(t, 'reset-mid-body', {}, {}, 2000)
  const f = findings.find((x) => x.id === 'http.body_incomplete')
  assert.equal(f?.cause, 'http_response_incomplete', JSON.stringify(findings))
  assert.equal(result.bodyProblem?.contentLength, 1024 * 1024)
  assert.ok((result.bodyProblem?.bodyBytes ?? 0) < 1024 * 1024)
  assert.match(f.title, /of 1048576 bytes received/)
  assert.match(f.evidence[0], /of 1048576 bytes \(Content-Length\)/)
  assert.equal(result.samples.length, 1, 'sampling stops at the first body problem')
})

test('a body closed before its Content-Length is incomplete too', async (t) => {
  const net = await import('node:net')
  const server = net.createServer((s) => s.once('data', () => s.end('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789')))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.after(() => new Promise<void>((r) => server.close(() => r())))
  const port = (server.address() as import('node:net').AddressInfo).port
  const { findings } = await probeHttp(targetFromUrl(`http://127.0.0.1:${port}`, 'nginx', { ...PORTICO_DEFAULTS }), '127.0.0.1', { timeoutMs: 2000, samples: 2 })
  assert.equal(findings[0].id, 'http.body_incomplete')
  assert.match(findings[0].title, /closed the connection mid-body: 10 of 100 bytes/)
})

test('a chunk interval above the idle timeout: connection_read_timeout with the stall and a Portico fix', async (t) => {
  const { findings } = await run(t, 'slow-body', { bodyIdleTimeoutMs: 40 }, {}, 2000)
  const f = findings[0]
  assert.equal(f.id, 'http.body_stall')
  assert.equal(f.cause, 'connection_read_timeout')
  assert.equal(f.severity, 'critical')
  assert.match(f.evidence[0], /longest silence between body reads \d+\.\dms; the proxy's idle timeout is 40ms/)
  assert.match(f.fix, /upstreams\.<name>\.timeouts\.idle: \d+ms/)
})

test('a body that goes silent: connection_read_timeout, nginx fix names proxy_read_timeout', async (t) => {
  const lab = await startLab('idle-mid-body')
  t.after(() => lab.close())
  const target = targetFromUrl(lab.url, 'nginx', { ...PORTICO_DEFAULTS, bodyIdleTimeoutMs: 100 })
  const { result, findings } = await probeHttp(target, '127.0.0.1', { timeoutMs: 2000, samples: 3 })
  assert.ok(['stalled', 'timeout'].includes(result.bodyProblem?.bodyEnd ?? ''), `body end ${result.bodyProblem?.bodyEnd}`)
  assert.equal(findings[0].id, 'http.body_stall')
  assert.match(findings[0].fix, /proxy_read_timeout \d+m?s;/)
})

test('a steady body within the idle timeout is no problem', async (t) => {
  const { findings } = await run(t, 'slow-body', { bodyIdleTimeoutMs: 2000 }, { chunkIntervalMs: 20, bodyBytes: 4096 }, 3000)
  assert.deepEqual(findings.filter((f) => f.severity !== 'info').map((f) => f.id), [])
})

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
  const { findings } = await run(t, 'slow', { responseHeaderTimeoutMs: 110 }, { latencyMs: 95 }, 3000)
  assert.equal(findings[0].id, 'http.slow_near')
  assert.equal(findings[0].severity, 'warning')
})

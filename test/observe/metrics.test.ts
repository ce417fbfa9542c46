import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Metrics } from '../../src/observe/metrics.ts'

const ok = { route: 'main', upstream: 'app', status: 200, error: null, endpoint: '127.0.0.1:1', cache: null }
const refused = { ...ok, status: 502, error: 'connection_refused' }

function value(text: string, line: RegExp): number {
  const m = new RegExp(`^${line.source} (\\S+)$`, 'm').exec(text)
  assert.ok(m, `no line ${line.source} in\n${text}`)
  return Number(m[1])
}

test('counts stay cumulative across scrapes, and the histogram places each duration in its bucket', async () => {
  const m = new Metrics(() => [])
  m.observe(ok, 3)
  m.observe(refused, 70)
  let text = await m.render()
  assert.equal(value(text, /portico_requests_total\{route="main",upstream="app",status_class="2xx"\}/), 1)
  assert.equal(value(text, /portico_requests_total\{route="main",upstream="app",status_class="5xx"\}/), 1)
  assert.equal(value(text, /portico_gateway_errors_total\{cause="connection_refused",upstream="app",endpoint="127.0.0.1:1"\}/), 1)
  // 3 ms is in le=0.005 but not le=0.001; 70 ms first counts at le=0.1.
  assert.equal(value(text, /portico_request_duration_seconds_bucket\{le="0.001",route="main",upstream="app"\}/), 0)
  assert.equal(value(text, /portico_request_duration_seconds_bucket\{le="0.005",route="main",upstream="app"\}/), 1)
  assert.equal(value(text, /portico_request_duration_seconds_bucket\{le="0.05",route="main",upstream="app"\}/), 1)
  assert.equal(value(text, /portico_request_duration_seconds_bucket\{le="0.1",route="main",upstream="app"\}/), 2)
  assert.equal(value(text, /portico_request_duration_seconds_bucket\{le="\+Inf",route="main",upstream="app"\}/), 2)

  for (let i = 0; i < 5; i++) m.observe(ok, 0.5)
  m.observe({ ...ok, route: 'other' }, 120_000)
  text = await m.render()
  assert.equal(value(text, /portico_requests_total\{route="main",upstream="app",status_class="2xx"\}/), 6)
  assert.equal(value(text, /portico_requests_total\{route="main",upstream="app",status_class="5xx"\}/), 1)
  assert.equal(value(text, /portico_request_duration_seconds_count\{route="main",upstream="app"\}/), 7)
  assert.equal(value(text, /portico_request_duration_seconds_bucket\{le="0.001",route="main",upstream="app"\}/), 5)
  assert.ok(Math.abs(value(text, /portico_request_duration_seconds_sum\{route="main",upstream="app"\}/) - 0.0755) < 1e-9)
  // Beyond the last bound (60 s): only +Inf counts it.
  assert.equal(value(text, /portico_request_duration_seconds_bucket\{le="60",route="other",upstream="app"\}/), 0)
  assert.equal(value(text, /portico_request_duration_seconds_bucket\{le="\+Inf",route="other",upstream="app"\}/), 1)
  assert.equal(value(text, /portico_requests_total\{route="other",upstream="app",status_class="2xx"\}/), 1)
})

// Values in fixes come from measurements: above a measured latency or silence, above a measured header, below a measured idle close; never a lower timeout than the proxy already has for a backend that did not answer.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { bufferAbove, fixes, keepaliveBelow, NGINX_DEFAULTS, PORTICO_DEFAULTS, targetFromUrl, timeoutAbove } from '../../../src/doctor/probes/target.ts'

test('timeoutAbove covers the measurement with a stated 50 % margin, in round units', () => {
  for (const ms of [1, 40, 105, 599, 600, 1500, 2500, 2999, 9000, 59_000]) {
    const v = timeoutAbove(ms)
    assert.ok(v >= ms * 1.5 && v > ms, `${ms} → ${v}`)
    assert.equal(v % (ms < 600 ? 100 : 1000), 0)
  }
  assert.equal(timeoutAbove(1500), 3000)
  assert.equal(timeoutAbove(2500), 4000)
})

test('bufferAbove and keepaliveBelow', () => {
  assert.equal(bufferAbove(20_000), 32)
  assert.equal(bufferAbove(16_384), 32)
  assert.equal(bufferAbove(100), 8)
  assert.ok(keepaliveBelow(200) < 200 && keepaliveBelow(200) >= 100)
  assert.ok(keepaliveBelow(5000) < 5000)
})

test('a backend that did not answer within the probe wait gets no lower timeout than the proxy has', () => {
  const long = targetFromUrl('http://127.0.0.1:1', 'portico', { ...PORTICO_DEFAULTS, responseHeaderTimeoutMs: 60_000 }, { upstream: 'api' })
  const fix = fixes.responseHeaderTimeout(long, 3000, false)
  assert.doesNotMatch(fix, /response_header: \d/)
  assert.match(fix, /already waits 1m.*--timeout 61s/)
  const short = targetFromUrl('http://127.0.0.1:1/', 'nginx', { ...NGINX_DEFAULTS, responseHeaderTimeoutMs: 500 }, { location: '`location /` block (nginx.conf:3)' })
  assert.match(fixes.responseHeaderTimeout(short, 3000, false), /`proxy_read_timeout 5s;` in the `location \/` block/)
})

test('the header buffer fix for nginx sets the buffers nginx -t requires alongside', () => {
  const t = targetFromUrl('http://127.0.0.1:1/', 'nginx', NGINX_DEFAULTS, { location: '`location /` block (nginx.conf:3)', protocol: 'fastcgi' })
  assert.match(fixes.headerSize(t, 20_000), /`fastcgi_buffer_size 32k; fastcgi_buffers 8 32k; fastcgi_busy_buffers_size 64k;` in the `location \/` block/)
  const g = targetFromUrl('http://127.0.0.1:1/', 'nginx', NGINX_DEFAULTS, { protocol: 'grpc' })
  assert.match(fixes.headerSize(g, 20_000), /`grpc_buffer_size 32k;`/)
})

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startLab } from '../../../src/lab/index.ts'
import { parseKeepAliveTimeout, probeKeepalive } from '../../../src/doctor/probes/keepalive.ts'
import { NGINX_DEFAULTS, PORTICO_DEFAULTS, targetFromUrl } from '../../../src/doctor/probes/target.ts'

test('Keep-Alive timeout= is read in seconds', () => {
  assert.equal(parseKeepAliveTimeout('timeout=5, max=100'), 5000)
  assert.equal(parseKeepAliveTimeout('max=100'), undefined)
})

test('a backend closing idle connections after 200ms races Portico\'s default 4s', async (t) => {
  const lab = await startLab('keepalive-race', { keepAliveTimeoutMs: 200 })
  t.after(() => lab.close())
  const target = targetFromUrl(lab.url, 'portico', PORTICO_DEFAULTS, { upstream: 'api' })
  const { result, findings } = await probeKeepalive(target, '127.0.0.1', { timeoutMs: 500, limitMs: 2000 })
  assert.ok(result.observedIdleMs !== undefined && result.observedIdleMs >= 150 && result.observedIdleMs < 1000, `${result.observedIdleMs}`)
  assert.equal(findings[0].id, 'keepalive.race')
  assert.equal(findings[0].cause, 'connection_terminated')
  assert.match(findings[0].fix, /upstreams\.api\.keepalive\.idle_timeout: 1\d0ms/)
})

test('for nginx the fix is keepalive_timeout in the upstream block', async (t) => {
  const lab = await startLab('keepalive-race', { keepAliveTimeoutMs: 200 })
  t.after(() => lab.close())
  const target = targetFromUrl(lab.url, 'nginx', { ...NGINX_DEFAULTS, keepaliveIdleTimeoutMs: 60_000 }, { upstream: 'app' })
  const { findings } = await probeKeepalive(target, '127.0.0.1', { timeoutMs: 500, limitMs: 2000 })
  assert.match(findings[0].fix, /`keepalive_timeout 1\d0ms;` in the `upstream app` block/)
})

test('Portico honours an advertised shorter Keep-Alive timeout: no race', async (t) => {
  const lab = await startLab('keepalive-race', { keepAliveTimeoutMs: 1000, advertiseKeepAlive: true })
  t.after(() => lab.close())
  const { result, findings } = await probeKeepalive(targetFromUrl(lab.url, 'portico', PORTICO_DEFAULTS), '127.0.0.1', { timeoutMs: 500, limitMs: 2000 })
  assert.equal(result.advertisedTimeoutMs, 1000)
  assert.equal(findings[0].severity, 'info')
})

test('a backend keeping connections past the limit: no race when the limit covers the proxy timeout', async (t) => {
  const lab = await startLab('keepalive-race', { keepAliveTimeoutMs: 5000 })
  t.after(() => lab.close())
  const target = targetFromUrl(lab.url, 'portico', { ...PORTICO_DEFAULTS, keepaliveIdleTimeoutMs: 300 })
  const t0 = performance.now()
  const { result, findings } = await probeKeepalive(target, '127.0.0.1', { timeoutMs: 500, limitMs: 400 })
  assert.ok(performance.now() - t0 < 1500)
  assert.equal(result.observedIdleMs, undefined)
  assert.equal(findings[0].id, 'keepalive.ok')
})

test('nginx without upstream keepalive does not reuse connections', async (t) => {
  const lab = await startLab('keepalive-race', { keepAliveTimeoutMs: 100 })
  t.after(() => lab.close())
  const { findings } = await probeKeepalive(targetFromUrl(lab.url, 'nginx', NGINX_DEFAULTS), '127.0.0.1', { timeoutMs: 500, limitMs: 1000 })
  assert.equal(findings[0].id, 'keepalive.unused')
})

test('a body reset mid-way says nothing about keep-alive: no finding, not "closes every connection"', async (t) => {
  const lab = await startLab('reset-mid-body')
  t.after(() => lab.close())
  const { result, findings } = await probeKeepalive(targetFromUrl(lab.url, 'upstream', PORTICO_DEFAULTS), '127.0.0.1', { timeoutMs: 1000, limitMs: 500 })
  assert.match(result.error ?? '', /body (reset|closed)/)
  assert.deepEqual(findings, [])
})

test('Node\'s own idle close (keepAliveTimeout 5 s, closed about 1 s later) is measured within the default limit, with margin', { timeout: 20_000 }, async (t) => {
  const http = await import('node:http')
  const server = http.createServer((_req, res) => res.end('ok'))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.after(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()) }))
  const port = (server.address() as { port: number }).port
  const { result } = await probeKeepalive(targetFromUrl(`http://127.0.0.1:${port}`, 'upstream', PORTICO_DEFAULTS), '127.0.0.1', { timeoutMs: 1000 })
  assert.ok(result.observedIdleMs !== undefined, `no close seen within ${result.limitMs}ms`)
  assert.ok(result.observedIdleMs >= 4900 && result.limitMs - result.observedIdleMs >= 1000, `closed after ${result.observedIdleMs}ms of a ${result.limitMs}ms limit`)
})

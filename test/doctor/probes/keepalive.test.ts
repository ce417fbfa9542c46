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

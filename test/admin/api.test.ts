// Admin API on loopback: shapes and values after real traffic, including a gateway failure.
import assert from 'node:assert/strict'
import net from 'node:net'
import { test } from 'node:test'
import { redact, REDACTED } from '../../src/admin/server.ts'
import { FailureRing } from '../../src/observe/failures.ts'
import type { AccessLogRecord } from '../../src/observe/access-log.ts'
import { oneUpstream, testEnv, type TestGateway } from '../helpers/gateway.ts'

const env = testEnv()

/** A port nothing listens on: listen on 0, note it, close it. */
async function deadPort(): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  const { port } = s.address() as net.AddressInfo
  await new Promise<void>((resolve) => s.close(() => resolve()))
  return port
}

function adminUrl(gw: TestGateway, path: string): string {
  const a = gw.gateway.admin?.address
  assert.ok(a, 'admin API listening')
  return `http://127.0.0.1:${a.port}${path}`
}

async function withTraffic(): Promise<TestGateway> {
  const ok = await env.lab('ok', { name: 'a' })
  const dead = await deadPort()
  const gw = await env.gateway({
    listeners: [{ address: '127.0.0.1:0' }],
    routes: [{ name: 'broken', match: { path_prefix: '/broken' }, upstream: 'gone' }, { name: 'main', upstream: 'app' }],
    upstreams: {
      app: { endpoints: [ok.url] },
      gone: { endpoints: [`http://127.0.0.1:${dead}`], retries: { attempts: 1 } },
    },
    admin: { address: '127.0.0.1:0' },
  })
  for (let i = 0; i < 3; i++) assert.equal((await fetch(`${gw.origin}/hello`)).status, 200)
  const failed = await fetch(`${gw.origin}/broken/x`, { headers: { 'x-request-id': 'req-broken-1' } })
  assert.equal(failed.status, 502)
  await failed.arrayBuffer()
  await gw.record('req-broken-1')
  return gw
}

test('GET /upstreams: every endpoint with health, connections and counters', async () => {
  const gw = await withTraffic()
  const res = await fetch(adminUrl(gw, '/upstreams'))
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type') ?? '', /application\/json/)
  const body = await res.json() as { upstreams: Array<{ name: string; endpoints: Array<Record<string, unknown>> }> }
  assert.deepEqual(body.upstreams.map((u) => u.name).sort(), ['app', 'gone'])
  const app = body.upstreams.find((u) => u.name === 'app')!.endpoints[0]
  assert.equal(app.state, 'healthy')
  assert.equal(app.available, true)
  assert.equal(app.requests, 3)
  assert.equal(app.in_flight, 0)
  assert.equal(app.last_error, null)
  const conns = app.connections as Record<string, number>
  assert.deepEqual(Object.keys(conns).sort(), ['connected', 'free', 'pending', 'running'])
  assert.equal(conns.running, 0)
  assert.ok(conns.connected >= 1 && conns.free >= 1, 'the keep-alive connection is kept idle')
  const gone = body.upstreams.find((u) => u.name === 'gone')!.endpoints[0]
  assert.equal((gone.last_error as { type: string }).type, 'connection_refused')
  assert.match(String(gone.address), /^127\.0\.0\.1:\d+$/)
})

test('GET /failures: the failure with its cause, route, upstream, endpoint and timings', async () => {
  const gw = await withTraffic()
  const body = await (await fetch(adminUrl(gw, '/failures'))).json() as { total: number; capacity: number; failures: Array<Record<string, unknown>> }
  assert.equal(body.total, 1)
  assert.equal(body.capacity, 200)
  const [f] = body.failures
  assert.equal(f.request_id, 'req-broken-1')
  assert.equal(f.error, 'connection_refused')
  assert.equal(f.status, 502)
  assert.equal(f.route, 'broken')
  assert.equal(f.upstream, 'gone')
  assert.match(String(f.endpoint), /^127\.0\.0\.1:\d+$/)
  assert.deepEqual(Object.keys(f.timings as object).sort(), ['connect_ms', 'dns_ms', 'tls_ms', 'ttfb_ms'])
})

test('GET /metrics: Prometheus text with requests, the RFC 9209 cause, durations and endpoint health', async () => {
  const gw = await withTraffic()
  const res = await fetch(adminUrl(gw, '/metrics'))
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/)
  const text = await res.text()
  assert.match(text, /^portico_requests_total\{route="main",upstream="app",status_class="2xx"\} 3$/m)
  assert.match(text, /^portico_requests_total\{route="broken",upstream="gone",status_class="5xx"\} 1$/m)
  assert.match(text, /^portico_gateway_errors_total\{cause="connection_refused",upstream="gone",endpoint="127\.0\.0\.1:\d+"\} 1$/m)
  assert.match(text, /^portico_request_duration_seconds_count\{route="main",upstream="app"\} 3$/m)
  assert.match(text, /^portico_upstream_endpoint_healthy\{upstream="app",endpoint="127\.0\.0\.1:\d+"\} 1$/m)
})

test('GET /config: the effective config with defaults applied', async () => {
  const gw = await withTraffic()
  const body = await (await fetch(adminUrl(gw, '/config'))).json() as Record<string, any>
  assert.equal(body.upstreams.app.timeouts.connect, 2000)
  assert.equal(body.shutdown.drain_timeout, 30_000)
  assert.equal(body.routes[1].name, 'main')
})

test('redact: values of keys named like secrets are hidden at any depth, others kept', () => {
  const out = redact({
    tls: { cert: '-----BEGIN CERTIFICATE-----', private_key: 'k', ca_certs: ['x'] },
    auth: [{ password: 'p', api_token: 't', user: 'u' }],
    client_secret: 's', keepalive: { idle_timeout: 4000 }, name: 'x',
  })
  assert.deepEqual(out, {
    tls: { cert: REDACTED, private_key: REDACTED, ca_certs: REDACTED },
    auth: [{ password: REDACTED, api_token: REDACTED, user: 'u' }],
    client_secret: REDACTED, keepalive: { idle_timeout: 4000 }, name: 'x',
  })
})

test('GET /healthz 200, unknown path 404 JSON, wrong method 405 with Allow', async () => {
  const gw = await env.gateway(oneUpstream(['http://127.0.0.1:9'], {}, { admin: { address: '127.0.0.1:0' } }))
  const h = await fetch(adminUrl(gw, '/healthz'))
  assert.equal(h.status, 200)
  assert.deepEqual(await h.json(), { status: 'ok' })
  const nf = await fetch(adminUrl(gw, '/nope'))
  assert.equal(nf.status, 404)
  assert.equal((await nf.json() as { error: string }).error, 'not_found')
  const wrong = await fetch(adminUrl(gw, '/upstreams'), { method: 'DELETE' })
  assert.equal(wrong.status, 405)
  assert.equal(wrong.headers.get('allow'), 'GET')
  assert.equal((await wrong.json() as { error: string }).error, 'method_not_allowed')
  const getReload = await fetch(adminUrl(gw, '/reload'))
  assert.equal(getReload.status, 405)
  assert.equal(getReload.headers.get('allow'), 'POST')
  await getReload.arrayBuffer()
})

test('POST /reload without a config file to re-read: refused, nothing changes', async () => {
  const gw = await env.gateway(oneUpstream(['http://127.0.0.1:9'], {}, { admin: { address: '127.0.0.1:0' } }))
  const before = gw.gateway.runtime
  const res = await fetch(adminUrl(gw, '/reload'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  assert.equal(res.status, 400)
  assert.equal((await res.json() as { ok: boolean }).ok, false)
  assert.equal(gw.gateway.runtime, before)
})

test('no admin section: no admin listener', async () => {
  const gw = await env.gateway(oneUpstream(['http://127.0.0.1:9']))
  assert.equal(gw.gateway.admin, null)
})

test('FailureRing keeps the last N failures, oldest first, and ignores successes', () => {
  const ring = new FailureRing(3)
  const rec = (i: number, error: string | null): AccessLogRecord => ({
    ts: new Date(i).toISOString(), request_id: `r${i}`, client_ip: '127.0.0.1', method: 'GET', host: 'h', path: '/',
    protocol: 'HTTP/1.1', status: error ? 502 : 200, bytes_sent: 0, duration_ms: 1, route: 'r', upstream: 'u',
    endpoint: 'e:1', upstream_status: null, attempts: 1, connection_reused: false,
    timings: { dns_ms: null, connect_ms: null, tls_ms: null, ttfb_ms: null }, error, details: null, cache: null,
  })
  for (let i = 1; i <= 5; i++) ring.observe(rec(i, 'connection_refused'))
  ring.observe(rec(6, null))
  assert.equal(ring.total, 5)
  assert.deepEqual(ring.list().map((f) => f.request_id), ['r3', 'r4', 'r5'])
  assert.throws(() => new FailureRing(0), RangeError)
})

/**
 * Access rules over loopback sockets (nginx allow/deny order semantics): the listener's
 * before routing, the route's after; first match decides; deny by method and by path. Each
 * refusal: 403, Proxy-Status details access_rule, the log line naming the rule, the refusal
 * counter. Clients come from different loopback addresses.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parseProxyStatus } from '../../src/failures/proxy-status.ts'
import { testEnv, type TestGateway } from '../helpers/gateway.ts'
import { metricValue, sendFrom, type FromReply } from '../helpers/from.ts'
import { rawRequest } from '../helpers/raw.ts'
import { configSchema } from '../../src/config/schema.ts'

const env = testEnv()

async function expectDenied(gw: TestGateway, r: FromReply, route: string | null, rule: RegExp, client: string): Promise<void> {
  assert.equal(r.status, 403, r.body.slice(0, 200))
  const own = parseProxyStatus(String(r.headers['proxy-status'])).at(-1)
  assert.equal(own?.params.error, 'http_request_denied')
  assert.equal(own?.params.details, 'access_rule')
  assert.ok(r.body.includes('An access rule denied the request'), 'the page says it in words')
  const rec = await gw.record(String(r.headers['x-request-id']))
  assert.equal(rec.status, 403)
  assert.equal(rec.error, 'http_request_denied')
  assert.equal(rec.client_ip, client)
  assert.equal(rec.route, route)
  assert.equal(rec.upstream_status, null)
  assert.match(rec.details ?? '', rule)
  assert.ok(rec.details?.startsWith(`access_rule: client ${client} denied by `), rec.details ?? '')
}

test('route rules: first match decides, in file order, and a request no rule matches is allowed', async () => {
  let reached = 0
  const up = await env.upstream((_req, res) => { reached++; res.end('ok') })
  const gw = await env.gateway({
    listeners: [{ address: '127.0.0.1:0' }],
    routes: [
      { name: 'admin', match: { path_prefix: '/admin' }, upstream: 'app', access: [{ allow: '127.0.0.2' }, { deny: '127.0.0.0/24' }, { allow: 'all' }] },
      { name: 'open', upstream: 'app', access: [{ deny: ['127.0.0.3', '127.0.0.4'] }] },
    ],
    upstreams: { app: { endpoints: [up] } },
  })
  assert.equal((await sendFrom(gw.port, { from: '127.0.0.2', path: '/admin/x' })).status, 200, 'the allow above the deny wins')
  await expectDenied(gw, await sendFrom(gw.port, { from: '127.0.0.3', path: '/admin/x' }), 'admin', /denied by route admin\.access\[1\] deny 127\.0\.0\.0\/24$/, '127.0.0.3')
  assert.equal((await sendFrom(gw.port, { from: '127.0.1.9', path: '/admin/x' })).status, 200, 'outside the denied range: allow all')
  await expectDenied(gw, await sendFrom(gw.port, { from: '127.0.0.4', path: '/other' }), 'open', /route open\.access\[0\] deny 127\.0\.0\.3,127\.0\.0\.4$/, '127.0.0.4')
  assert.equal((await sendFrom(gw.port, { from: '127.0.0.5', path: '/other' })).status, 200, 'no rule matches: allowed')
  assert.equal(reached, 3, 'denied requests never reach the upstream')
  const metrics = await gw.gateway.metrics.render()
  assert.equal(metricValue(metrics, 'portico_requests_refused_total', { route: 'admin', refusal: 'access_rule' }), 1)
  assert.equal(metricValue(metrics, 'portico_requests_refused_total', { route: 'open', refusal: 'access_rule' }), 1)
})

test('deny by method and by path pattern, for every client', async () => {
  const up = await env.upstream((_req, res) => res.end('ok'))
  const gw = await env.gateway({
    listeners: [{ address: '127.0.0.1:0' }],
    routes: [{
      name: 'api', upstream: 'app',
      access: [
        { deny: 'all', methods: ['DELETE'] },
        { deny: 'all', path_regex: '\\.(git|env)(/|$)' },
        { allow: '127.0.0.0/8', path_prefix: '/internal' },
        { deny: 'all', path_prefix: '/internal' },
      ],
    }],
    upstreams: { app: { endpoints: [up] } },
  })
  await expectDenied(gw, await sendFrom(gw.port, { method: 'DELETE', path: '/x' }), 'api', /deny all \(methods DELETE\)$/, '127.0.0.1')
  assert.equal((await sendFrom(gw.port, { method: 'POST', path: '/x' })).status, 200)
  await expectDenied(gw, await sendFrom(gw.port, { path: '/app/.git/config' }), 'api', /path_regex/, '127.0.0.1')
  await expectDenied(gw, await sendFrom(gw.port, { path: '/a/b/../.env' }), 'api', /path_regex/, '127.0.0.1')
  assert.equal((await sendFrom(gw.port, { path: '/.envy' })).status, 200)
  assert.equal((await sendFrom(gw.port, { path: '/internal/stats' })).status, 200, 'a loopback client is allowed under /internal')
})

test('listener rules run before routing: a denied client gets 403, not 404, and learns nothing of the routes', async () => {
  const up = await env.upstream((_req, res) => res.end('ok'))
  const gw = await env.gateway({
    listeners: [{ address: '127.0.0.1:0', access: [{ deny: '127.0.0.9' }] }],
    routes: [{ name: 'only', match: { host: 'a.test' }, upstream: 'app', access: [{ deny: '127.0.0.8' }] }],
    upstreams: { app: { endpoints: [up] } },
  })
  await expectDenied(gw, await sendFrom(gw.port, { from: '127.0.0.9', headers: { host: 'nowhere.test' } }), null, /listener 127\.0\.0\.1:0\.access\[0\] deny 127\.0\.0\.9$/, '127.0.0.9')
  assert.equal((await sendFrom(gw.port, { from: '127.0.0.8', headers: { host: 'nowhere.test' } })).status, 404)
  await expectDenied(gw, await sendFrom(gw.port, { from: '127.0.0.8', headers: { host: 'a.test' } }), 'only', /route only/, '127.0.0.8')
  assert.equal((await sendFrom(gw.port, { from: '127.0.0.7', headers: { host: 'a.test' } })).status, 200)
  const metrics = await gw.gateway.metrics.render()
  assert.equal(metricValue(metrics, 'portico_requests_refused_total', { route: '', refusal: 'access_rule' }), 1)
})

test('a reload applies new listener and route rules at once', async () => {
  const up = await env.upstream((_req, res) => res.end('ok'))
  const input = {
    listeners: [{ address: '127.0.0.1:0' }],
    routes: [{ name: 'r', upstream: 'app' }],
    upstreams: { app: { endpoints: [up] } },
  }
  const gw = await env.gateway(input)
  assert.equal((await sendFrom(gw.port, { from: '127.0.0.6' })).status, 200)
  const summary = await gw.gateway.reload(configSchema.parse({ ...input, listeners: [{ address: gw.config.listeners[0].address, access: [{ deny: '127.0.0.6' }] }] }))
  assert.deepEqual(summary.warnings, [], 'access rules need no restart')
  assert.equal((await sendFrom(gw.port, { from: '127.0.0.6' })).status, 403)
  assert.equal((await sendFrom(gw.port, { from: '127.0.0.5' })).status, 200)
})

test('a WebSocket upgrade goes through the same rules: denied before it reaches the upstream', async () => {
  let upgrades = 0
  const server = await env.server((_req, res) => res.end('plain'))
  server.on('upgrade', (_req, socket) => { upgrades++; socket.destroy() })
  const gw = await env.gateway({
    listeners: [{ address: '127.0.0.1:0' }],
    routes: [{ name: 'ws', upstream: 'app', access: [{ deny: '127.0.0.1' }] }],
    upstreams: { app: { endpoints: [`http://127.0.0.1:${(server.address() as { port: number }).port}`] } },
  })
  const r = await rawRequest(gw.port, 'GET /chat HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')
  assert.equal(r.status, 403)
  assert.equal(parseProxyStatus(r.get('proxy-status') ?? '').at(-1)?.params.details, 'access_rule')
  const rec = await gw.record(r.get('x-request-id') ?? '')
  assert.equal(rec.status, 403)
  assert.match(rec.details ?? '', /^access_rule: client 127\.0\.0\.1 denied by route ws\.access\[0\]/)
  assert.equal(upgrades, 0)
})

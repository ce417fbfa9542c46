/**
 * Header rules of a route over loopback sockets (nginx proxy_set_header, add_header,
 * proxy_hide_header): request fields removed, set and added before the upstream sees them;
 * response fields of the upstream's answer removed (X-Powered-By), set and added; Portico's
 * own error responses untouched; routes without rules unchanged.
 */
import assert from 'node:assert/strict'
import type http from 'node:http'
import { test } from 'node:test'
import { testEnv } from '../helpers/gateway.ts'
import { sendFrom } from '../helpers/from.ts'
import { send } from '../helpers/client.ts'
import { expectExchange } from '../helpers/expect.ts'

const env = testEnv()

test('request and response rules: remove, set, add; another route is untouched', async () => {
  const seen: http.IncomingHttpHeaders[] = []
  const raw: string[][] = []
  const up = await env.upstream((req, res) => {
    seen.push(req.headers)
    raw.push(req.rawHeaders)
    res.setHeader('x-powered-by', 'Express')
    res.setHeader('x-debug', 'secret')
    res.setHeader('cache-control', 'no-cache')
    res.setHeader('link', '</a.css>; rel=preload')
    res.end('ok')
  })
  const gw = await env.gateway({
    listeners: [{ address: '127.0.0.1:0' }],
    routes: [
      {
        name: 'ruled', match: { path_prefix: '/r' }, upstream: 'app',
        request_headers: { remove: ['Cookie', 'x-internal'], set: { 'X-Tenant': 'blue', 'User-Agent': 'portico-test' }, add: { 'X-Extra': 'one' } },
        response_headers: { remove: ['X-Powered-By', 'x-debug'], set: { 'Cache-Control': 'public, max-age=60', 'X-Frame-Options': 'DENY' }, add: { Link: '</b.js>; rel=preload' } },
      },
      { name: 'plain', upstream: 'app' },
    ],
    upstreams: { app: { endpoints: [up] } },
  })
  const r = await send(gw.port, { path: '/r/x', headers: { cookie: 'sid=1', 'x-internal': 'yes', 'x-tenant': 'red', 'user-agent': 'curl', 'x-extra': 'zero' } })
  assert.equal(r.status, 200)
  const h = seen[0]
  assert.equal(h.cookie, undefined)
  assert.equal(h['x-internal'], undefined)
  assert.equal(h['x-tenant'], 'blue', 'set replaces the client\'s value')
  assert.equal(h['user-agent'], 'portico-test')
  assert.equal(h['x-extra'], 'zero, one', 'add keeps the client\'s field')
  assert.equal(raw[0].filter((n, i) => i % 2 === 0 && n.toLowerCase() === 'x-tenant').length, 1)
  assert.ok(h['x-forwarded-for'], 'Portico\'s own fields are still there')
  assert.equal(r.headers['x-powered-by'], undefined)
  assert.equal(r.headers['x-debug'], undefined)
  assert.equal(r.headers['cache-control'], 'public, max-age=60')
  assert.equal(r.headers['x-frame-options'], 'DENY')
  assert.equal(r.headers.link, '</a.css>; rel=preload, </b.js>; rel=preload')
  await expectExchange(gw, r, { status: 200, error: null })

  const p = await sendFrom(gw.port, { path: '/p', headers: { cookie: 'sid=1' } })
  assert.equal(p.headers['x-powered-by'], 'Express', 'a route without rules passes it')
  assert.equal(seen[1].cookie, 'sid=1')
})

test('Portico\'s own error responses are not changed by response rules', async () => {
  // A dead port: listened on, noted, closed.
  const closed = await env.server(() => {})
  const port = (closed.address() as { port: number }).port
  await new Promise((resolve) => closed.close(resolve))
  const gw = await env.gateway({
    listeners: [{ address: '127.0.0.1:0' }],
    routes: [{ name: 'dead', upstream: 'app', response_headers: { set: { 'X-Frame-Options': 'DENY' } } }],
    upstreams: { app: { endpoints: [`http://127.0.0.1:${port}`], timeouts: { connect: '300ms' }, retries: { attempts: 1 } } },
  })
  const r = await sendFrom(gw.port)
  assert.equal(r.status, 502)
  assert.equal(r.headers['x-frame-options'], undefined)
})

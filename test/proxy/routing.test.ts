/**
 * Routing through a running gateway: exact and wildcard hosts, path prefixes on segment
 * boundaries, longest prefix first, 404 when nothing matches, and strip_prefix.
 */
import assert from 'node:assert/strict'
import { before, describe, test } from 'node:test'
import type { ConfigInput } from '../../src/config/schema.ts'
import { header, send } from '../helpers/client.ts'
import { expectExchange } from '../helpers/expect.ts'
import { testEnv, type TestGateway } from '../helpers/gateway.ts'

const env = testEnv('file')

/** Upstream names, each served by an 'ok' lab of the same name. */
const NAMES = ['exact', 'wild', 'api', 'apiv2', 'stripped', 'fallback', 'health', 'rewritten', 'renamed'] as const

async function routedGateway(): Promise<TestGateway> {
  const upstreams: ConfigInput['upstreams'] = {}
  for (const name of NAMES) upstreams[name] = { endpoints: [(await env.lab('ok', { name })).url] }
  return env.gateway({
    listeners: [{ address: '127.0.0.1:0' }],
    routes: [
      { name: 'exact', match: { host: 'app.example.com' }, upstream: 'exact' },
      { name: 'wild', match: { host: '*.example.com' }, upstream: 'wild' },
      { name: 'api', match: { host: 'svc.test', path_prefix: '/api' }, upstream: 'api' },
      { name: 'apiv2', match: { host: 'svc.test', path_prefix: '/api/v2' }, upstream: 'apiv2' },
      { name: 'stripped', match: { host: 'svc.test', path_prefix: '/strip/' }, upstream: 'stripped', strip_prefix: true },
      { name: 'fallback', match: { host: 'svc.test', path_prefix: '/' }, upstream: 'fallback' },
      { name: 'health', match: { host: 'svc.test', path: '/api/health' }, upstream: 'health', prefix_rewrite: '/healthz-check' },
      { name: 'rewritten', match: { host: 'svc.test', path_prefix: '/old/' }, upstream: 'rewritten', prefix_rewrite: '/new/' },
      { name: 'renamed', match: { host: 'svc.test', path_prefix: '/named' }, upstream: 'renamed', host_rewrite: 'backend.internal:8080' },
    ],
    upstreams,
  })
}

/** Where one request went: the route in the log and the lab that answered, with the URL it saw. */
async function where(gw: TestGateway, host: string, path: string) {
  const reply = await send(gw.port, { headers: { host }, path })
  if (reply.status === 404) {
    await expectExchange(gw, reply, { status: 404, error: 'destination_not_found', endpoint: null, attempts: 0 })
    return { route: null, server: null, url: null }
  }
  const r = await expectExchange(gw, reply, { status: 200, error: null, attempts: 1 })
  const body = reply.json<{ server: string; url: string }>()
  assert.equal(header(reply, 'x-lab-server'), body.server)
  assert.equal(r.route, body.server, 'route and upstream have the same name in this config')
  assert.equal(r.upstream, body.server)
  return { route: r.route, server: body.server, url: body.url }
}

describe('routing', () => {
  let gw: TestGateway
  // One gateway for the table: routes are read-only, and each test below only sends requests.
  before(async () => { gw = await routedGateway() })

  const cases: Array<[host: string, path: string, route: string | null, url?: string]> = [
    ['app.example.com', '/x', 'exact'],
    ['APP.Example.com:8080', '/x', 'exact'],
    ['a.example.com', '/x', 'wild'],
    ['deep.a.example.com', '/', 'wild'],
    ['example.com', '/', null],
    ['notexample.com', '/', null],
    ['svc.test', '/api', 'api'],
    ['svc.test', '/api/users?id=1', 'api'],
    ['svc.test', '/apix', 'fallback'],
    ['svc.test', '/api/v2', 'apiv2'],
    ['svc.test', '/api/v2/items', 'apiv2'],
    ['svc.test', '/api/v20', 'api'],
    ['svc.test', '/anything', 'fallback'],
    ['svc.test', '/strip/a/b?q=1', 'stripped', '/a/b?q=1'],
    ['svc.test', '/strip', 'stripped', '/'],
    ['svc.test', '/strip/', 'stripped', '/'],
    ['svc.test', '/strip?x=1', 'stripped', '/?x=1'],
    ['svc.test', '/stripped', 'fallback', '/stripped'],
    ['svc.test', '/api/users?id=1', 'api', '/api/users?id=1'],
    ['other.test', '/', null],
    // An exact path beats the longer-matching prefix /api and nothing else.
    ['svc.test', '/api/health', 'health', '/healthz-check'],
    ['svc.test', '/api/health?full=1', 'health', '/healthz-check?full=1'],
    ['svc.test', '/api/health/', 'api', '/api/health/'],
    ['svc.test', '/api/healthy', 'api'],
    ['svc.test', '/old/a/b?q=1', 'rewritten', '/new/a/b?q=1'],
    ['svc.test', '/old', 'rewritten', '/new'],
    ['svc.test', '/old?q', 'rewritten', '/new?q'],
  ]
  for (const [host, path, route, url] of cases) {
    test(`${host}${path} → ${route ?? '404'}${url !== undefined ? ` as ${url}` : ''}`, async () => {
      const got = await where(gw, host, path)
      assert.equal(got.route, route)
      if (url !== undefined) assert.equal(got.url, url)
    })
  }

  test('host_rewrite sets the Host sent upstream; other routes keep the client\'s', async () => {
    const renamed = await send(gw.port, { headers: { host: 'svc.test' }, path: '/named/x' })
    assert.equal(renamed.json<{ headers: Record<string, string> }>().headers.host, 'backend.internal:8080')
    const kept = await send(gw.port, { headers: { host: 'svc.test' }, path: '/api' })
    assert.equal(kept.json<{ headers: Record<string, string> }>().headers.host, 'svc.test')
  })
})

// The dashboard over real loopback sockets: GET /stats after refused and hanging endpoints,
// the page and its files served locally, and the sign-in that turns the admin token into
// a session cookie opening reads only.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import type { StatsView } from '../../src/admin/stats.ts'
import { SESSION_COOKIE } from '../../src/admin/dashboard.ts'
import { configSchema, type ConfigInput } from '../../src/config/schema.ts'
import { startDnsServer } from '../doctor/probes/dns-server.ts'
import { FAST_TIMEOUTS, testEnv, type TestGateway } from '../helpers/gateway.ts'

const env = testEnv()
const dir = mkdtempSync(join(tmpdir(), 'portico-dashboard-'))
after(() => rmSync(dir, { recursive: true, force: true }))
const TOKEN = 'ZGFzaGJvYXJkLXRva2VuLWZvci10ZXN0cw'
const tokenFile = join(dir, 'admin.token')
writeFileSync(tokenFile, `${TOKEN}\n`)

/** A gateway with `app` (a refusing and a hanging endpoint; one failure ejects) and `ok`. */
async function faulty(admin: { address: string; token_file?: string } = { address: '127.0.0.1:0' }): Promise<{ gw: TestGateway; admin: string; refuse: string; hang: string }> {
  const refuse = await env.lab('refuse')
  const hang = await env.lab('hang')
  const ok = await env.lab('ok', { name: 'ok' })
  const gw = await env.gateway({
    listeners: [{ address: '127.0.0.1:0' }],
    routes: [{ name: 'app', match: { path_prefix: '/app' }, upstream: 'app' }, { name: 'main', upstream: 'ok' }],
    upstreams: {
      app: { endpoints: [refuse.url, hang.url], timeouts: FAST_TIMEOUTS, retries: { attempts: 1 }, outlier_detection: { consecutive_failures: 1 } },
      ok: { endpoints: [ok.url] },
    },
    admin,
  })
  const a = gw.gateway.admin?.address
  assert.ok(a)
  return { gw, admin: `http://127.0.0.1:${a.port}`, refuse: new URL(refuse.url).host, hang: new URL(hang.url).host }
}

/** Sends `n` requests to /app and waits for their log lines. */
async function fail(gw: TestGateway, n: number): Promise<number[]> {
  const statuses: number[] = []
  for (let i = 0; i < n; i++) {
    const res = await fetch(`${gw.origin}/app/x`, { headers: { 'x-request-id': `dash-${i}` } })
    await res.arrayBuffer()
    statuses.push(res.status)
    await gw.record(`dash-${i}`)
  }
  return statuses
}

test('GET /stats: states, causes by endpoint, the feed with title, hint and doctor command', async () => {
  const { gw, admin, refuse, hang } = await faulty()
  for (let i = 0; i < 3; i++) assert.equal((await fetch(`${gw.origin}/ok`)).status, 200)
  const statuses = await fail(gw, 3)
  assert.deepEqual([...statuses].sort(), [502, 504, 504])
  const res = await fetch(`${admin}/stats`)
  assert.equal(res.status, 200)
  const v = await res.json() as StatsView
  // Red first: the upstream with an ejected endpoint comes before the healthy one.
  assert.deepEqual(v.upstreams.map((u) => u.name), ['app', 'ok'])
  const app = v.upstreams[0]
  assert.equal(app.severity, 'bad')
  const byAddr = Object.fromEntries(app.endpoints.map((e) => [e.address, e]))
  assert.equal(byAddr[refuse].state, 'ejected')
  assert.equal(byAddr[refuse].reason, 'connection_refused')
  assert.deepEqual(byAddr[refuse].causes_hour, { connection_refused: 1 })
  assert.deepEqual(byAddr[hang].causes_hour, { http_response_timeout: 2 })
  assert.equal(byAddr[hang].error_rate, 1)
  assert.ok(byAddr[hang].p50_ms !== null && byAddr[hang].p50_ms >= 200, `p50 ${byAddr[hang].p50_ms} near the 300 ms timeout`)
  assert.ok(Date.parse(byAddr[refuse].since) <= Date.now())
  const ok = v.upstreams[1].endpoints[0]
  assert.equal(ok.state, 'up')
  assert.equal(ok.error_rate, 0)
  assert.ok(ok.requests_per_s > 0)
  assert.deepEqual(Object.keys(v.errors.causes).sort(), ['connection_refused', 'http_response_timeout'])
  assert.equal(v.errors.times.length, 360)
  assert.equal(v.errors.causes.http_response_timeout.reduce((a, b) => a + b, 0), 2)
  assert.equal(v.errors_window, 3)
  assert.equal(v.failures.length, 3)
  const newest = v.failures[0]
  assert.equal(newest.request_id, 'dash-2')
  assert.equal(newest.error, 'http_response_timeout')
  assert.equal(newest.title, 'The upstream did not send a response header in time')
  assert.match(newest.hint, /response_header timeout/)
  assert.equal(newest.doctor, `portico doctor --upstream http://${hang}/`)
  assert.match(app.doctor, new RegExp(`^portico doctor --upstream http://${refuse}/ http://${hang}/$`))
  assert.deepEqual(app.retries, { another_endpoint: 0, fresh_connection: 0, budget_exhausted: 0, active: 0, retrying: 0 })
  const route = v.routes.find((r) => r.name === 'app')
  assert.equal(route?.requests_hour, 3)
  // The ring's raw counts, for summing the rings of several processes.
  const ring = await (await fetch(`${admin}/stats/ring`)).json() as { buckets: number; endpoints: Array<{ endpoint: string; errors: number[] }> }
  assert.equal(ring.buckets, 360)
  assert.equal(ring.endpoints.find((e) => e.endpoint === hang)?.errors.reduce((a, b) => a + b, 0), 2)
})

test('the page and its files come from the admin listener, with a policy that allows nothing else', async () => {
  const { gw, admin } = await faulty()
  await fail(gw, 2)
  const page = await fetch(`${admin}/`)
  assert.equal(page.status, 200)
  assert.match(page.headers.get('content-type') ?? '', /^text\/html/)
  assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'self'.*frame-ancestors 'none'/)
  const html = await page.text()
  for (const src of html.matchAll(/(?:src|href)="([^"]+)"/g)) {
    const url = src[1]
    if (url.startsWith('data:')) continue
    assert.ok(url.startsWith('/'), `${url} is served by the admin listener`)
    if (url.startsWith('/assets/')) {
      const a = await fetch(`${admin}${url}`)
      assert.equal(a.status, 200, url)
      assert.ok((await a.arrayBuffer()).byteLength > 100, `${url} has content`)
    }
  }
  assert.match(html, /<details class="failure" data-id="dash-1" data-cause="http_response_timeout">/)
  assert.match(html, /data-state="ejected"/)
  assert.match(html, /The upstream refused the connection\./)
  const sections = await (await fetch(`${admin}/dashboard/sections`)).text()
  assert.match(sections, /<script type="application\/json" id="series">\{"times":\[/)
  assert.doesNotMatch(sections, /<html/)
})

test('with admin.token_file: sign-in form, session cookie (HttpOnly, SameSite=Strict) opening reads only', async () => {
  const { admin } = await faulty({ address: '127.0.0.1:0', token_file: tokenFile })
  const page = await fetch(`${admin}/`)
  assert.equal(page.status, 401)
  assert.match(await page.text(), /<form method="post" action="\/login">/)
  assert.equal((await fetch(`${admin}/stats`)).status, 401)
  const wrong = await fetch(`${admin}/login?token=nope`, { redirect: 'manual' })
  assert.equal(wrong.status, 401)
  assert.equal(wrong.headers.get('set-cookie'), null)
  const right = await fetch(`${admin}/login`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${TOKEN}` })
  assert.equal(right.status, 303)
  assert.equal(right.headers.get('location'), '/')
  const cookie = right.headers.get('set-cookie') ?? ''
  assert.match(cookie, new RegExp(`^${SESSION_COOKIE}=[0-9a-f]{64}; Path=/; HttpOnly; SameSite=Strict$`))
  assert.ok(!cookie.includes(TOKEN), 'the cookie is not the token')
  const session = cookie.split(';')[0]
  assert.equal((await fetch(`${admin}/`, { headers: { cookie: session } })).status, 200)
  assert.equal((await fetch(`${admin}/stats`, { headers: { cookie: session } })).status, 200)
  assert.equal((await fetch(`${admin}/config`, { headers: { cookie: session } })).status, 200)
  // Writes still need the bearer token.
  assert.equal((await fetch(`${admin}/reload`, { method: 'POST', headers: { cookie: session, 'content-type': 'application/json' }, body: '{}' })).status, 401)
  assert.equal((await fetch(`${admin}/stats`, { headers: { cookie: `${SESSION_COOKIE}=${'0'.repeat(64)}` } })).status, 401)
  assert.equal((await fetch(`${admin}/stats`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200)
  // A sign-in POST from another site is refused by the Origin check.
  assert.equal((await fetch(`${admin}/login`, { method: 'POST', headers: { origin: 'http://evil.example', 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${TOKEN}` })).status, 403)
})

test('an endpoint state change shows in GET /stats within 3 s, with since', async () => {
  const { gw, admin, refuse } = await faulty()
  const before = (await (await fetch(`${admin}/stats`)).json() as StatsView).upstreams.find((u) => u.name === 'app')!.endpoints.find((e) => e.address === refuse)!
  assert.equal(before.state, 'up')
  const t0 = Date.now()
  await fail(gw, 1)
  const deadline = Date.now() + 3000
  let state = ''
  let since = ''
  while (Date.now() < deadline) {
    const e = (await (await fetch(`${admin}/stats`)).json() as StatsView).upstreams.find((u) => u.name === 'app')!.endpoints.find((x) => x.address === refuse)!
    state = e.state
    since = e.since
    if (state === 'ejected') break
    await new Promise((r) => setTimeout(r, 100))
  }
  assert.equal(state, 'ejected')
  assert.ok(Date.parse(since) >= t0 - 1000, `since ${since} is the time of the change`)
})

/** Polls `GET /stats` until an endpoint row of `upstream` satisfies `check`. */
async function rowWhen(admin: string, upstream: string, check: (e: StatsView['upstreams'][number]['endpoints'][number]) => boolean, waitMs = 3000) {
  const deadline = Date.now() + waitMs
  let last: unknown = null
  for (;;) {
    const v = await (await fetch(`${admin}/stats`)).json() as StatsView
    const u = v.upstreams.find((x) => x.name === upstream)
    last = u
    const e = u?.endpoints.find(check)
    if (e !== undefined) return { upstream: u!, endpoint: e }
    if (Date.now() > deadline) throw new Error(`timed out waiting for a row of ${upstream}; last ${JSON.stringify(last)}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

test('states: down by active health check, dns failing for a name without answer, draining after a reload removed the upstream', async () => {
  const refuse = await env.lab('refuse')
  const hang = await env.lab('hang')
  const dns = await startDnsServer({})
  env.defer(() => dns.close())
  const input: ConfigInput = {
    listeners: [{ address: '127.0.0.1:0' }],
    routes: [{ name: 'held', match: { path_prefix: '/held' }, upstream: 'held' }, { name: 'main', upstream: 'checked' }],
    upstreams: {
      checked: { endpoints: [refuse.url], health_check: { interval: '100ms', timeout: '100ms', unhealthy_threshold: 1, jitter: '0ms' } },
      named: { endpoints: ['http://svc.test:8080'], dns: { resolvers: [`127.0.0.1:${dns.port}`] } },
      held: { endpoints: [hang.url], timeouts: { response_header: '10s' } },
    },
    admin: { address: '127.0.0.1:0' },
  }
  const gw = await env.gateway(input)
  const admin = `http://127.0.0.1:${gw.gateway.admin!.address!.port}`
  const down = await rowWhen(admin, 'checked', (e) => e.state === 'down')
  assert.equal(down.endpoint.reason, 'connection_refused')
  assert.equal(down.endpoint.severity, 'bad')
  const named = await rowWhen(admin, 'named', (e) => e.state === 'dns_failing')
  assert.equal(named.endpoint.address, 'svc.test')
  assert.equal(named.endpoint.reason, 'dns_error')

  // A request held by the upstream `held`, then a reload without it: its pool drains.
  const aborted = new AbortController()
  const held = fetch(`${gw.origin}/held/x`, { signal: aborted.signal }).catch(() => null)
  const endpoint = gw.gateway.runtime.pools.get('held')!.endpoints[0]
  await new Promise<void>((resolve) => { const t = setInterval(() => { if (endpoint.inFlight > 0) { clearInterval(t); resolve() } }, 10) })
  const { held: _, ...upstreams } = input.upstreams
  await gw.gateway.reload(configSchema.parse({ ...input, routes: [{ name: 'main', upstream: 'checked' }], upstreams }))
  const draining = await rowWhen(admin, 'held (draining)', (e) => e.state === 'draining')
  assert.equal(draining.endpoint.in_flight, 1)
  aborted.abort()
  await held
})

/**
 * Rate limits (GCRA, nginx limit_req ... nodelay) and limit_conn over loopback sockets:
 * the admitted rate under 3 s of load within ±10 % of the configured one; each 429 with
 * Retry-After, RateLimit-Policy, RateLimit, Proxy-Status details rate_limited, its log line
 * and the refusal counter; keys by client address, header and route; the cap on requests
 * in progress released when responses close.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import { test } from 'node:test'
import { parseProxyStatus } from '../../src/failures/proxy-status.ts'
import { testEnv } from '../helpers/gateway.ts'
import { metricValue, sendFrom } from '../helpers/from.ts'
import { assertAccuracy, expectLimited, load } from '../helpers/limits.ts'

const env = testEnv()

test('local limit: 3 s of load at about 4x the rate is admitted at the configured rate, within ±10 %', async () => {
  let reached = 0
  const up = await env.upstream((_req, res) => { reached++; res.end('ok') })
  const gw = await env.gateway({
    listeners: [{ address: '127.0.0.1:0' }],
    routes: [{ name: 'api', upstream: 'app', rate_limits: [{ name: 'per-client', rate: '40r/s', burst: 10 }] }],
    upstreams: { app: { endpoints: [up] } },
  })
  const r = await load(gw.port, 3, 4, 25)
  assert.equal(r.other, 0)
  const ratio = assertAccuracy(r.ok, 40, 10, r.seconds, 'local 40r/s burst 10')
  console.log(`# local limit 40r/s burst 10: ${r.ok} admitted, ${r.limited} refused in ${r.seconds.toFixed(2)} s: ${(ratio * 100).toFixed(1)} % of rate × time + burst + 1; sustained ${((r.ok - 11) / r.seconds).toFixed(1)} r/s`)
  assert.ok(r.limited > r.ok, 'the load was well over the rate')
  assert.equal(reached, r.ok, 'refused requests never reach the upstream')
  assert.ok(r.sample)
  await expectLimited(gw, r.sample, 'per-client', '"per-client";q=11;w=1')
  const metrics = await gw.gateway.metrics.render()
  assert.equal(metricValue(metrics, 'portico_requests_refused_total', { route: 'api', refusal: 'rate_limited' }), r.limited)
})

test('keys: by header (independent per value, not counted without it), by route (all clients together)', async () => {
  const up = await env.upstream((_req, res) => res.end('ok'))
  const gw = await env.gateway({
    listeners: [{ address: '127.0.0.1:0' }],
    routes: [
      { name: 'keyed', match: { path_prefix: '/keyed' }, upstream: 'app', rate_limits: [{ key: { header: 'X-Api-Key' }, rate: '1r/m', burst: 1 }] },
      { name: 'whole', match: { path_prefix: '/whole' }, upstream: 'app', rate_limits: [{ key: 'route', rate: '1r/m', burst: 2, send_headers: true }] },
    ],
    upstreams: { app: { endpoints: [up] } },
  })
  const keyed = (key?: string) => sendFrom(gw.port, { path: '/keyed', headers: key ? { 'x-api-key': key } : {} })
  assert.deepEqual([(await keyed('a')).status, (await keyed('a')).status, (await keyed('a')).status], [200, 200, 429])
  assert.equal((await keyed('b')).status, 200, 'another key has its own allowance')
  for (let i = 0; i < 4; i++) assert.equal((await keyed()).status, 200, 'no key: not limited by this rule')
  const limited = await keyed('a')
  await expectLimited(gw, limited, 'limit0', '"limit0";q=2;w=120')
  assert.ok(Number(limited.headers['retry-after']) > 1, 'a minute-rate limit says to wait longer')

  const statuses: number[] = []
  const first = await sendFrom(gw.port, { path: '/whole', from: '127.0.0.2' })
  assert.equal(first.headers['ratelimit-policy'], '"limit0";q=3;w=180', 'send_headers: on admitted responses too')
  assert.equal(first.headers.ratelimit, '"limit0";r=2;t=60')
  statuses.push(first.status)
  for (const from of ['127.0.0.3', '127.0.0.4', '127.0.0.5']) statuses.push((await sendFrom(gw.port, { path: '/whole', from })).status)
  assert.deepEqual(statuses, [200, 200, 200, 429], 'the route as a whole: burst + 1 whoever sends')
})

test('limit_conn: the cap on requests in progress per client, released when the response closes', async () => {
  const held: http.ServerResponse[] = []
  let waiting: (() => void) | null = null
  const up = await env.upstream((_req, res) => {
    held.push(res)
    waiting?.()
  })
  const gw = await env.gateway({
    listeners: [{ address: '127.0.0.1:0' }],
    routes: [{ name: 'slow', upstream: 'app', limit_conn: { max: 2 } }],
    upstreams: { app: { endpoints: [up] } },
  })
  const arrived = (n: number) => new Promise<void>((resolve) => {
    const check = () => { if (held.length >= n) resolve() }
    waiting = check
    check()
  })
  const a = sendFrom(gw.port, { from: '127.0.0.2' })
  const b = sendFrom(gw.port, { from: '127.0.0.2' })
  await arrived(2)
  const c = await sendFrom(gw.port, { from: '127.0.0.2' })
  assert.equal(c.status, 429)
  assert.equal(parseProxyStatus(String(c.headers['proxy-status'])).at(-1)?.params.details, 'rate_limited')
  const rec = await gw.record(String(c.headers['x-request-id']))
  assert.match(rec.details ?? '', /^rate_limited: limit_conn: 2 requests in progress \(client 127\.0\.0\.2\), max 2$/)
  const other = sendFrom(gw.port, { from: '127.0.0.3' })
  await arrived(3)
  for (const res of held) res.end('ok')
  assert.deepEqual([(await a).status, (await b).status, (await other).status], [200, 200, 200])
  await gw.waitForRecords(4)
  const d = sendFrom(gw.port, { from: '127.0.0.2' })
  await arrived(4)
  held[3].end('ok')
  assert.equal((await d).status, 200, 'the slots were released')
})

test('a long header key is remembered hashed, and still limits that value alone', async () => {
  const up = await env.upstream((_req, res) => res.end('ok'))
  const gw = await env.gateway({
    listeners: [{ address: '127.0.0.1:0' }],
    routes: [{ name: 'keyed', upstream: 'app', rate_limits: [{ key: { header: 'X-Api-Key' }, rate: '1r/m' }] }],
    upstreams: { app: { endpoints: [up] } },
  })
  const long = 'k'.repeat(4000)
  const send = (key: string) => sendFrom(gw.port, { headers: { 'x-api-key': key } })
  const first = await send(long)
  assert.equal(first.status, 200, first.body.slice(0, 300) + JSON.stringify(gw.records.at(-1)))
  assert.deepEqual([(await send(long)).status, (await send(`${long}2`)).status], [429, 200])
  const limit = [...gw.gateway.runtime.filters.limits.values()][0]
  assert.equal(limit.storeKey(long).length, 22)
  assert.equal(limit.storeKey('short-key'), 'short-key')
})

test('two limits on a route: both policies listed, RateLimit names the one with fewer requests left; a refused POST leaves its keep-alive connection usable', async () => {
  const up = await env.upstream((req, res) => { req.resume(); req.on('end', () => res.end('ok')) })
  const gw = await env.gateway({
    listeners: [{ address: '127.0.0.1:0' }],
    routes: [{
      name: 'two', upstream: 'app',
      rate_limits: [
        { name: 'wide', key: 'route', rate: '100r/m', burst: 50, send_headers: true },
        { name: 'narrow', key: 'client_ip', rate: '1r/m', burst: 1, send_headers: true },
      ],
    }],
    upstreams: { app: { endpoints: [up] } },
  })
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  try {
    const a = await sendFrom(gw.port, { agent })
    assert.equal(a.status, 200)
    assert.equal(a.headers['ratelimit-policy'], '"wide";q=51;w=31, "narrow";q=2;w=120')
    assert.equal(a.headers.ratelimit, '"narrow";r=1;t=60')
    assert.equal((await sendFrom(gw.port, { agent })).status, 200)
    const refused = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: gw.port, method: 'POST', path: '/', agent, headers: { 'content-length': '5000' } }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)) })
      req.on('error', reject)
      req.end('x'.repeat(5000))
    })
    assert.equal(refused, 429)
    const after = await sendFrom(gw.port, { agent })
    assert.equal(after.status, 429, 'the next request on the connection is read as a request, not as the refused body')
    const rec = await gw.record(String(after.headers['x-request-id']))
    assert.match(rec.details ?? '', /^rate_limited: rate limit narrow \(client_ip 127\.0\.0\.1\) exceeded$/)
  } finally {
    agent.destroy()
  }
})

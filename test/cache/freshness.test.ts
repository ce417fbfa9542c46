// Which responses the shared cache stores and reuses, by the fields as RFC 9111 and RFC 9213 define them: each case stores a response, asks again and checks whether the second answer came from the store.
import assert from 'node:assert/strict'
import type http from 'node:http'
import { test } from 'node:test'
import { header, send } from '../helpers/client.ts'
import { cached, countingOrigin } from '../helpers/cache.ts'
import { testEnv } from '../helpers/gateway.ts'

const env = testEnv()

/** What the second request of a case gets. */
type Outcome =
  /** Served from the store: `hit`, the first body, one upstream request. */
  | 'reused'
  /** Stored, but stale or to be revalidated: the second request goes upstream (`fwd=stale`). */
  | 'stale'
  /** Not stored: the second request is a miss again (`fwd=uri-miss`). */
  | 'not stored'

interface Case {
  name: string
  status?: number
  /** Response fields; a list is sent as several field lines. */
  headers: Record<string, string | string[]>
  requestHeaders?: http.OutgoingHttpHeaders
  /** Route cache settings besides `enabled`. */
  cache?: Parameters<typeof cached>[1]
  outcome: Outcome
}

const inAnHour = (): string => new Date(Date.now() + 3600_000).toUTCString()

const cases: Case[] = [
  // RFC 9213 §2.1: the targeted field replaces Cache-Control and Expires.
  { name: 'CDN-Cache-Control max-age wins over Cache-Control no-store', headers: { 'cdn-cache-control': 'max-age=60', 'cache-control': 'no-store' }, outcome: 'reused' },
  { name: 'CDN-Cache-Control max-age=0 wins over Cache-Control max-age and a future Expires', headers: { 'cdn-cache-control': 'max-age=0', 'cache-control': 'max-age=3600', expires: inAnHour() }, outcome: 'stale' },
  { name: 'CDN-Cache-Control private keeps a response with Cache-Control max-age out of the store', headers: { 'cdn-cache-control': 'private', 'cache-control': 'max-age=3600' }, outcome: 'not stored' },
  { name: 'CDN-Cache-Control no-store keeps a response with Cache-Control max-age out of the store', headers: { 'cdn-cache-control': 'no-store', 'cache-control': 'max-age=3600' }, outcome: 'not stored' },
  { name: 'CDN-Cache-Control no-cache makes a response with Cache-Control max-age revalidate', headers: { 'cdn-cache-control': 'no-cache', 'cache-control': 'max-age=3600' }, outcome: 'stale' },
  { name: 'a CDN-Cache-Control that is not a Dictionary structured field is ignored', headers: { 'cdn-cache-control': 'max-age=60, &&&', 'cache-control': 'no-store' }, outcome: 'not stored' },
  // RFC 9111 §5.2: directive names are case-insensitive; §4.2.1: field lines are one list.
  { name: 'Cache-Control directive names are compared case-insensitively (No-CaChE)', headers: { 'cache-control': 'No-CaChE, max-age=3600' }, outcome: 'stale' },
  { name: 'Cache-Control directive names are compared case-insensitively (MAX-AGE)', headers: { 'cache-control': 'MAX-AGE=3600' }, outcome: 'reused' },
  { name: 's-maxage on a second Cache-Control line takes precedence over max-age on the first', headers: { 'cache-control': ['max-age=3600', 's-maxage=0'] }, outcome: 'stale' },
  { name: 'a max-age with a space before = is not a directive', headers: { 'cache-control': 'max-age =3600' }, outcome: 'stale' },
  // RFC 9111 §5.3 and RFC 9110 §5.6.7: an Expires that is not an HTTP-date is in the past.
  { name: 'Expires in UTC instead of GMT is invalid, so already expired', headers: { expires: 'Thu, 18 Aug 2050 02:01:18 UTC' }, outcome: 'stale' },
  { name: 'Expires with a one-digit hour is invalid, so already expired', headers: { expires: 'Thu, 18 Aug 2050 2:01:18 GMT' }, outcome: 'stale' },
  { name: 'Expires with dashes in the date is invalid, so already expired', headers: { expires: 'Thu, 18-Aug-2050 02:01:18 GMT' }, outcome: 'stale' },
  { name: 'Expires in the obsolete RFC 850 form is a date', headers: { expires: 'Thursday, 18-Aug-50 02:01:18 GMT' }, outcome: 'reused' },
  { name: 'Expires in the obsolete asctime form is a date', headers: { expires: 'Thu Aug 18 02:01:18 2050' }, outcome: 'reused' },
  // RFC 9111 §5.1: Age is a non-negative integer; the first of several counts.
  { name: 'an Age that is a decimal number is ignored', headers: { 'cache-control': 'max-age=3600', age: '7200.0' }, outcome: 'reused' },
  { name: 'the first of several Age values counts', headers: { 'cache-control': 'max-age=3600', age: ['7200', '0'] }, outcome: 'stale' },
  // RFC 9111 §7.3: Set-Cookie may be stored; Portico does so only when the route says so. §5.4: Pragma is deprecated.
  { name: 'a response with Set-Cookie is not stored by default', headers: { 'cache-control': 'max-age=3600', 'set-cookie': 'a=b' }, outcome: 'not stored' },
  { name: 'a response with Set-Cookie is stored and reused with store_set_cookie', headers: { 'cache-control': 'max-age=3600', 'set-cookie': 'a=b' }, cache: { store_set_cookie: true }, outcome: 'reused' },
  { name: 'Pragma: no-cache in a response with max-age is ignored', headers: { 'cache-control': 'max-age=3600', pragma: 'no-cache' }, outcome: 'reused' },
  { name: 'Pragma: no-cache in a request is ignored', headers: { 'cache-control': 'max-age=3600' }, requestHeaders: { pragma: 'no-cache' }, outcome: 'reused' },
  // RFC 9111 §3: any final status with explicit freshness may be stored; §5.2.2.3 must-understand.
  { name: 'a 500 with max-age is stored and reused', status: 500, headers: { 'cache-control': 'max-age=3600' }, outcome: 'reused' },
  { name: 'a 599 with max-age is stored and reused', status: 599, headers: { 'cache-control': 'max-age=3600' }, outcome: 'reused' },
  { name: 'a 400 without explicit freshness is not stored', status: 400, headers: {}, outcome: 'not stored' },
  { name: 'must-understand lifts no-store for a status Portico understands', headers: { 'cache-control': 'max-age=3600, no-store, must-understand' }, outcome: 'reused' },
  { name: 'must-understand keeps a status Portico does not understand out of the store', status: 599, headers: { 'cache-control': 'max-age=3600, no-store, must-understand' }, outcome: 'not stored' },
]

for (const c of cases) {
  test(c.name, async () => {
    const status = c.status ?? 200
    const o = await countingOrigin(env, (_req, res, n) => {
      res.writeHead(status, { 'content-type': 'text/plain', ...c.headers })
      res.end(`v${n}`)
    })
    const gw = await env.gateway(cached(o.url, c.cache))
    const first = await send(gw.port, { path: '/c', headers: c.requestHeaders })
    assert.equal(first.status, status)
    assert.equal(first.body.toString(), 'v1')
    assert.equal(header(first, 'cache-status'), `portico; fwd=uri-miss; fwd-status=${status}${c.outcome === 'not stored' ? '' : '; stored'}`)
    const second = await send(gw.port, { path: '/c', headers: c.requestHeaders })
    assert.equal(second.status, status)
    if (c.outcome === 'reused') {
      assert.match(header(second, 'cache-status'), /^portico; hit; ttl=\d+$/)
      assert.equal(second.body.toString(), 'v1')
      assert.equal(o.count('/c'), 1)
    } else {
      assert.match(header(second, 'cache-status'), c.outcome === 'stale' ? /^portico; fwd=stale; fwd-status=\d+; stored$/ : /^portico; fwd=uri-miss; fwd-status=\d+$/)
      assert.equal(second.body.toString(), 'v2')
      assert.equal(o.count('/c'), 2)
    }
  })
}

test('a stored response is served with the fields the origin sent: CDN-Cache-Control, Cache-Control, Expires and Set-Cookie (store_set_cookie) unchanged', async () => {
  const expires = 'Thursday, 18-Aug-50 02:01:18 GMT'
  const o = await countingOrigin(env, (_req, res) => {
    res.writeHead(200, { 'cdn-cache-control': 'max-age=60', 'cache-control': 'no-store', expires, 'set-cookie': ['a=b', 'c=d'] })
    res.end('body')
  })
  const gw = await env.gateway(cached(o.url, { store_set_cookie: true }))
  await send(gw.port, { path: '/f' })
  const r = await send(gw.port, { path: '/f' })
  assert.equal(r.status, 200)
  assert.match(header(r, 'cache-status'), /^portico; hit/)
  assert.equal(r.body.toString(), 'body')
  assert.equal(header(r, 'cdn-cache-control'), 'max-age=60')
  assert.equal(header(r, 'cache-control'), 'no-store')
  assert.equal(header(r, 'expires'), expires)
  assert.deepEqual(r.headers['set-cookie'], ['a=b', 'c=d'])
  assert.equal(header(r, 'age'), '0')
})

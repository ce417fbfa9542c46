// The parsers behind the cache's policy view: HTTP-date, Cache-Control and Dictionary structured fields.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parseCacheControl, parseHttpDate, policyResponse, targetedDirectives } from '../../src/cache/fields.ts'

test('parseHttpDate: IMF-fixdate, RFC 850 and asctime; anything else is null (RFC 9110 §5.6.7)', () => {
  const t = Date.UTC(1994, 10, 6, 8, 49, 37)
  assert.equal(parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT'), t)
  assert.equal(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT', Date.UTC(2026, 0, 1)), t)
  assert.equal(parseHttpDate('Sun Nov  6 08:49:37 1994'), t)
  assert.equal(parseHttpDate('SUN, 06 NOV 1994 08:49:37 gmt'), t)
  // A two-digit year more than 50 years ahead is in the century before.
  assert.equal(parseHttpDate('Thursday, 18-Aug-50 02:01:18 GMT', Date.UTC(2026, 0, 1)), Date.UTC(2050, 7, 18, 2, 1, 18))
  assert.equal(parseHttpDate('Friday, 18-Aug-99 02:01:18 GMT', Date.UTC(2026, 0, 1)), Date.UTC(1999, 7, 18, 2, 1, 18))
  for (const bad of ['0', 'Thu, 18 Aug 2050 02:01:18 UTC', 'Thu 18 Aug 2050 02:01:18 GMT', 'Thu, 18  Aug 2050 02:01:18 GMT',
    'Thu, 18 Aug 2050 2:01:18 GMT', 'Thu, 18 Aug 2050 02.01.18 GMT', 'Thu, 31 Feb 2050 02:01:18 GMT', 'Xyz, 18 Aug 2050 02:01:18 GMT']) {
    assert.equal(parseHttpDate(bad), null, bad)
  }
})

test('parseCacheControl: names lower-cased, quoted values unquoted, malformed members dropped, first occurrence kept', () => {
  assert.deepEqual([...parseCacheControl('Max-Age=60, no-cache="Set-Cookie, X", max-age=1, s-maxage =5, private, =x')],
    [['max-age', '60'], ['no-cache', 'Set-Cookie, X'], ['private', true]])
})

test('targetedDirectives: a Dictionary structured field, or null when it does not parse (RFC 9213 §2.1, RFC 8941 §4.2.2)', () => {
  assert.deepEqual([...targetedDirectives('max-age=60, no-transform, foo;a=1, bar="x"') ?? []],
    [['max-age', '60'], ['no-transform', true], ['foo', true], ['bar', 'x']])
  // Wrong type: the directive is dropped, the field kept.
  assert.deepEqual([...targetedDirectives('max-age="60", private') ?? []], [['private', true]])
  for (const bad of ['', 'MaX-aGe=60', 'max-age =60', 'max-age= 60', 'max-age=60, &&', 'max-age=60,']) {
    assert.equal(targetedDirectives(bad), null, bad)
  }
})

test('policyResponse: CDN-Cache-Control replaces Cache-Control and Expires; an invalid Expires is in the past', () => {
  const v = policyResponse(200, { 'cdn-cache-control': 'max-age=60', 'cache-control': 'no-store', expires: 'Thu, 18 Aug 2050 02:01:18 GMT' })
  assert.equal(v.headers['cache-control'], 'max-age=60')
  assert.equal(v.headers.expires, undefined)
  const w = policyResponse(404, { expires: 'Thu, 18 Aug 2050 2:01:18 GMT', age: ['7200', '0'], 'set-cookie': ['a=b'], 'cache-control': ['public', 'No-Cache="x"'] })
  assert.equal(w.headers.expires, 'Thu, 01 Jan 1970 00:00:00 GMT')
  assert.equal(w.headers.age, '7200')
  assert.equal(w.headers['set-cookie'], undefined)
  assert.equal(w.headers['cache-control'], 'public, no-cache')
  assert.equal(policyResponse(599, { 'cache-control': 'max-age=1' }).status, 200)
  assert.equal(policyResponse(599, {}).status, 599)
})

/**
 * The router alone (src/routing/router.ts): Host and path matching, the order of precedence
 * (exact host, then wildcard, then any host; the longest prefix within a class; the first
 * route of equals), the compiled prefix and strip flag, and Host headers as clients send them.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { normalizeHost, pathMatches, Router } from '../../src/routing/router.ts'
import { router } from '../helpers/router.ts'

/** The name of the route `r` picks for Host `host` and target `path`, or null. */
function pick(r: Router, host: string | undefined, path: string): string | null {
  return r.match(host, path)?.name ?? null
}

describe('host matching', () => {
  const r = router([
    { name: 'exact', match: { host: 'app.example.com' }, upstream: 'a' },
    { name: 'wild', match: { host: '*.example.com' }, upstream: 'b' },
    { name: 'mixed-case', match: { host: 'API.Test' }, upstream: 'c' },
    { name: 'wild-mixed-case', match: { host: '*.Svc.Test' }, upstream: 'c' },
  ])

  const cases: Array<[host: string | undefined, route: string | null, why: string]> = [
    ['app.example.com', 'exact', 'exact host'],
    ['APP.Example.COM', 'exact', 'Host is case-insensitive (RFC 9110 §4.2.3)'],
    ['app.example.com:8080', 'exact', 'the port is ignored'],
    ['app.example.com.', 'exact', 'a fully qualified name with its trailing dot'],
    ['app.example.com.:8443', 'exact', 'trailing dot and port'],
    ['other.example.com', 'wild', 'wildcard: one label'],
    ['a.b.example.com', 'wild', 'wildcard: several labels'],
    ['A.EXAMPLE.COM:80', 'wild', 'wildcard, case and port'],
    ['example.com', null, 'a wildcard matches sub-domains only, not the bare domain'],
    ['badexample.com', null, 'a wildcard matches on a label boundary'],
    ['.example.com', null, 'an empty label is not a sub-domain'],
    ['app.example.com.evil.test', null, 'the host must end with the suffix'],
    ['api.test', 'mixed-case', 'configured host is lower-cased'],
    ['x.svc.test', 'wild-mixed-case', 'configured wildcard is lower-cased'],
    ['', null, 'empty Host matches no host route'],
    [undefined, null, 'absent Host matches no host route'],
    [':8080', null, 'a Host that is only a port'],
    ['[::1]:8080', null, 'an IPv6 literal is not a name'],
  ]
  for (const [host, route, why] of cases) {
    test(`${JSON.stringify(host)} → ${route ?? 'no route'} (${why})`, () => {
      assert.equal(pick(r, host, '/'), route)
    })
  }
})

describe('path_prefix', () => {
  const r = router([
    { name: 'api', match: { path_prefix: '/api' }, upstream: 'a' },
    { name: 'slash', match: { path_prefix: '/static/' }, upstream: 'b' },
  ])
  const cases: Array<[path: string, route: string | null]> = [
    ['/api', 'api'],
    ['/api/', 'api'],
    ['/api/v1/users', 'api'],
    ['/api?q=1', 'api'],
    ['/apix', null],
    ['/ap', null],
    ['/API', null],
    ['/x/api', null],
    ['/static/app.js', 'slash'],
    ['/static', 'slash'],
    ['/staticx', null],
    ['/', null],
    ['*', null],
  ]
  for (const [path, route] of cases) {
    test(`${path} → ${route ?? 'no route'}`, () => {
      assert.equal(pick(r, 'any.test', path), route)
    })
  }

  test('prefixes match on segment boundaries, case-sensitively', () => {
    assert.equal(pathMatches('/v1', '/v1'), true)
    assert.equal(pathMatches('/v1', '/v1/x'), true)
    assert.equal(pathMatches('/v1', '/v1?x=/y'), true)
    assert.equal(pathMatches('/v1', '/v10'), false)
    assert.equal(pathMatches('/v1', '/V1'), false)
    assert.equal(pathMatches('', ''), true)
    assert.equal(pathMatches('', '*'), true)
    assert.equal(pathMatches('/v1', ''), false)
  })

  test('the default prefix "/" matches every target, asterisk-form included', () => {
    const all = router([{ name: 'all', upstream: 'a' }])
    for (const path of ['/', '/x', '/x/y?z', '*']) assert.equal(pick(all, 'h.test', path), 'all', path)
    assert.equal(all.routes[0].prefix, '')
  })
})

describe('precedence', () => {
  test('exact host over wildcard over any host, whatever the order in the file and the prefix lengths', () => {
    const r = router([
      { name: 'any-long', match: { path_prefix: '/a/b/c' }, upstream: 'a' },
      { name: 'wild-long', match: { host: '*.example.com', path_prefix: '/a/b' }, upstream: 'b' },
      { name: 'exact-root', match: { host: 'app.example.com' }, upstream: 'c' },
    ])
    assert.equal(pick(r, 'app.example.com', '/a/b/c/d'), 'exact-root')
    assert.equal(pick(r, 'x.example.com', '/a/b/c/d'), 'wild-long')
    assert.equal(pick(r, 'x.example.com', '/z'), null, 'the wildcard route does not match /z and the exact host is another')
    assert.equal(pick(r, 'other.test', '/a/b/c'), 'any-long')
  })

  test('a host route that does not match the path lets a route of a lower class match', () => {
    const r = router([
      { name: 'exact-api', match: { host: 'app.example.com', path_prefix: '/api' }, upstream: 'a' },
      { name: 'any', upstream: 'b' },
    ])
    assert.equal(pick(r, 'app.example.com', '/api/x'), 'exact-api')
    assert.equal(pick(r, 'app.example.com', '/web'), 'any')
  })

  test('within a host class the longest prefix wins, wherever it is in the file', () => {
    const r = router([
      { name: 'root', match: { host: 'svc.test' }, upstream: 'a' },
      { name: 'api', match: { host: 'svc.test', path_prefix: '/api' }, upstream: 'a' },
      { name: 'api-v2', match: { host: 'svc.test', path_prefix: '/api/v2' }, upstream: 'b' },
    ])
    assert.equal(pick(r, 'svc.test', '/api/v2/x'), 'api-v2')
    assert.equal(pick(r, 'svc.test', '/api/v20'), 'api')
    assert.equal(pick(r, 'svc.test', '/api'), 'api')
    assert.equal(pick(r, 'svc.test', '/other'), 'root')
  })

  test('equal routes: the first in the file wins', () => {
    const r = router([
      { name: 'first', match: { host: 'svc.test', path_prefix: '/x' }, upstream: 'a' },
      { name: 'second', match: { host: 'SVC.test', path_prefix: '/x/' }, upstream: 'b' },
      { name: 'any-first', upstream: 'a' },
      { name: 'any-second', upstream: 'b' },
    ])
    assert.equal(pick(r, 'svc.test', '/x/y'), 'first')
    assert.equal(pick(r, 'other.test', '/y'), 'any-first')
  })

  test('no route matches: null', () => {
    const r = router([{ name: 'only', match: { host: 'svc.test' }, upstream: 'a' }])
    assert.equal(r.match('other.test', '/'), null)
    assert.equal(new Router([]).match('svc.test', '/'), null)
  })
})

describe('compiled routes', () => {
  test('names default to route<index>; upstream, preserve_host and strip_prefix are carried', () => {
    const r = router([
      { match: { path_prefix: '/strip/' }, upstream: 'a', strip_prefix: true, preserve_host: false },
      { name: 'named', upstream: 'b' },
    ])
    const [first, second] = r.routes
    assert.equal(first.name, 'route0')
    assert.equal(first.upstream, 'a')
    assert.equal(first.stripPrefix, true)
    assert.equal(first.preserveHost, false)
    // The prefix that strip_prefix removes has no trailing slash, so /strip/x goes upstream as /x.
    assert.equal(first.prefix, '/strip')
    assert.equal(second.name, 'named')
    assert.equal(second.stripPrefix, false)
    assert.equal(second.preserveHost, true)
    assert.equal(pick(r, 'h.test', '/strip/x'), 'route0')
  })

  test('host classes: an exact host, a wildcard suffix with its dot, or neither', () => {
    const [exact, wild, any] = router([
      { match: { host: 'App.Example.com' }, upstream: 'a' },
      { match: { host: '*.Example.com' }, upstream: 'a' },
      { upstream: 'a' },
    ]).routes
    assert.deepEqual([exact.host, exact.hostSuffix], ['app.example.com', null])
    assert.deepEqual([wild.host, wild.hostSuffix], [null, '.example.com'])
    assert.deepEqual([any.host, any.hostSuffix], [null, null])
  })

  test('a path_prefix that does not start with "/" and a host with a path are rejected by the schema', () => {
    const issue = (text: string) => (err: unknown): boolean => (err as { issues?: Array<{ message: string }> }).issues?.some((i) => i.message.includes(text)) === true
    assert.throws(() => router([{ match: { path_prefix: 'api' }, upstream: 'a' }]), issue('a path prefix starts with "/"'))
    assert.throws(() => router([{ match: { host: 'a.test/x' }, upstream: 'a' }]), issue('expected a host name'))
  })
})

describe('normalizeHost', () => {
  const cases: Array<[input: string | undefined, out: string]> = [
    ['Example.COM', 'example.com'],
    ['example.com:8080', 'example.com'],
    ['example.com.', 'example.com'],
    ['[::1]:8080', '[::1]'],
    ['[::1]', '[::1]'],
    ['[2001:DB8::1]:443', '[2001:db8::1]'],
    ['127.0.0.1:80', '127.0.0.1'],
    ['', ''],
    [undefined, ''],
  ]
  for (const [input, out] of cases) {
    test(`${JSON.stringify(input)} → ${JSON.stringify(out)}`, () => assert.equal(normalizeHost(input), out))
  }
})

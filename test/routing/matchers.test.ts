/**
 * Route conditions beyond host and path (src/routing/router.ts): methods, header and query
 * conditions, client address ranges, path regexes, AND inside a match and first match
 * across routes of the same path; and the config problems of bad regexes and ranges, with
 * file:line:column.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { parseConfig, ConfigError } from '../../src/config/load.ts'
import type { RequestFacts } from '../../src/routing/router.ts'
import { router } from '../helpers/router.ts'

function facts(f: Partial<RequestFacts> = {}): RequestFacts {
  return { method: 'GET', headers: {}, clientIp: '127.0.0.1', ...f }
}

describe('conditions', () => {
  const r = router([
    { name: 'canary', match: { path_prefix: '/api', headers: [{ name: 'X-Canary', exact: 'on' }] }, upstream: 'c' },
    { name: 'writes', match: { path_prefix: '/api', methods: ['POST', 'PUT', 'DELETE'] }, upstream: 'w' },
    { name: 'curl-debug', match: { path_prefix: '/api', headers: [{ name: 'user-agent', regex: '^curl/' }], query: [{ name: 'debug', exact: '1' }] }, upstream: 'd' },
    { name: 'no-auth', match: { path_prefix: '/api', headers: [{ name: 'Authorization', present: false }] }, upstream: 'n' },
    { name: 'office', match: { path_prefix: '/api', client_ip: ['10.0.0.0/8', '2001:db8::/32'] }, upstream: 'o' },
    { name: 'api', match: { path_prefix: '/api' }, upstream: 'a' },
  ])
  const pick = (f: Partial<RequestFacts>, path = '/api/x') => r.match('h', path, facts(f))?.name ?? null
  const auth = { authorization: 'Bearer t' }

  test('header exact (name case-insensitive, value case-sensitive)', () => {
    assert.equal(pick({ headers: { 'x-canary': 'on', ...auth } }), 'canary')
    assert.equal(pick({ headers: { 'x-canary': 'ON', ...auth } }), 'api')
  })
  test('methods', () => {
    assert.equal(pick({ method: 'DELETE', headers: auth }), 'writes')
    assert.equal(pick({ method: 'GET', headers: auth }), 'api')
  })
  test('AND inside a match: header regex and query parameter both', () => {
    assert.equal(pick({ headers: { 'user-agent': 'curl/8.5', ...auth } }, '/api/x?debug=1'), 'curl-debug')
    assert.equal(pick({ headers: { 'user-agent': 'curl/8.5', ...auth } }, '/api/x?debug=0'), 'api')
    assert.equal(pick({ headers: { 'user-agent': 'wget', ...auth } }, '/api/x?debug=1'), 'api')
    assert.equal(pick({ headers: { 'user-agent': 'curl/8', ...auth } }, '/api/x?a=b&debug=%31'), 'curl-debug', 'the value is percent-decoded')
  })
  test('present: false means the field is absent', () => {
    assert.equal(pick({}), 'no-auth')
    assert.equal(pick({ headers: auth }), 'api')
  })
  test('client address ranges, IPv4 and IPv6', () => {
    assert.equal(pick({ headers: auth, clientIp: '10.9.8.7' }), 'office')
    assert.equal(pick({ headers: auth, clientIp: '2001:db8::7' }), 'office')
    assert.equal(pick({ headers: auth, clientIp: '192.0.2.1' }), 'api')
  })
  test('first match: the first route of equal specificity whose conditions hold wins', () => {
    assert.equal(pick({ method: 'POST', headers: { 'x-canary': 'on' } }), 'canary', 'canary is above writes and no-auth')
  })
  test('a route with conditions never matches without facts', () => {
    assert.equal(r.match('h', '/api/x')?.name, 'api')
  })
})

describe('path regex', () => {
  const r = router([
    { name: 'exact', match: { path: '/v1/health' }, upstream: 'e' },
    { name: 'versioned', match: { path_regex: '^/v[0-9]+/' }, upstream: 'v' },
    { name: 'images', match: { path_regex: '\\.(png|jpg)$' }, upstream: 'i' },
    { name: 'long-prefix', match: { path_prefix: '/v1/users/admin' }, upstream: 'p' },
    { name: 'other', match: { host: 'h.test', path_prefix: '/' }, upstream: 'o' },
  ])
  const pick = (path: string, host = 'x.test') => r.match(host, path, facts())?.name ?? null
  test('exact over regex over prefix (nginx location =, ~, prefix); the first regex that matches', () => {
    assert.equal(pick('/v1/health'), 'exact')
    assert.equal(pick('/v1/users/admin'), 'versioned', 'a regex wins over the longest prefix')
    assert.equal(pick('/v2/logo.png'), 'versioned')
    assert.equal(pick('/static/logo.png'), 'images')
    assert.equal(pick('/static/logo.png?x=.jpg'), 'images')
    assert.equal(pick('/static/logo.gif?x=.png'), null, 'the query is not matched')
  })
  test('host class still comes first', () => {
    assert.equal(pick('/v2/x', 'h.test'), 'other')
  })
})

describe('config problems with file:line:column', () => {
  const base = 'listeners: [{ address: "127.0.0.1:8080" }]\nupstreams: { app: { endpoints: ["http://127.0.0.1:3000"] } }\nroutes:\n'
  function problem(routes: string) {
    try {
      parseConfig(base + routes, 'p.yaml')
    } catch (e) {
      assert.ok(e instanceof ConfigError)
      return e.problems
    }
    assert.fail('accepted')
  }
  test('a bad path regex', () => {
    const [p] = problem('  - upstream: app\n    match:\n      path_regex: "^/v[0-9+/"\n')
    assert.deepEqual([p.file, p.line, p.column], ['p.yaml', 6, 19])
    assert.match(p.message, /routes\[0\]\.match\.path_regex: invalid regular expression "\^\/v\[0-9\+\/": /)
  })
  test('a bad header regex and a bad CIDR, each at its own place', () => {
    const ps = problem('  - upstream: app\n    match:\n      headers: [{ name: X-A, regex: "(" }]\n      client_ip: [10.0.0.0/8, 10.0.0.1/8]\n')
    assert.equal(ps.length, 2)
    assert.deepEqual([ps[0].line, ps[0].column], [6, 37])
    assert.match(ps[0].message, /routes\[0\]\.match\.headers\[0\]\.regex: invalid regular expression/)
    assert.deepEqual([ps[1].line, ps[1].column], [7, 31])
    assert.match(ps[1].message, /routes\[0\]\.match\.client_ip\[1\]: invalid address range "10.0.0.1\/8": host bits are set/)
  })
  test('access rules and rate limits', () => {
    const ps = problem('  - upstream: app\n    access:\n      - { allow: 300.1.1.1 }\n      - { deny: all, allow: 10.0.0.0/8 }\n    rate_limits:\n      - { rate: 10/s }\n      - { rate: 5r/s, scope: redis }\n')
    const messages = ps.map((p) => `${p.line}:${p.column} ${p.message}`)
    assert.equal(ps.length, 4, messages.join('\n'))
    assert.match(messages[0], /^6:\d+ routes\[0\]\.access\[0\]\.allow: invalid address range "300\.1\.1\.1"/)
    assert.match(messages[1], /^7:\d+ routes\[0\]\.access\[1\]\.allow: an access rule has exactly one of allow and deny/)
    assert.match(messages[2], /^9:\d+ routes\[0\]\.rate_limits\[0\]\.rate: invalid rate "10\/s"/)
    assert.match(messages[3], /^10:\d+ routes\[0\]\.rate_limits\[1\]\.scope: scope redis needs the top-level redis/)
  })
})

/**
 * Path normalisation (RFC 3986 §5.2.4) over raw sockets: dot-segments in every spelling
 * never carry a request out of the route that matched, the upstream sees the normalised
 * path, and what cannot be normalised is refused with its own 400.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { normalizeTarget } from '../../src/routing/normalize.ts'
import { parseProxyStatus } from '../../src/failures/proxy-status.ts'
import type { ConfigInput } from '../../src/config/schema.ts'
import { recordingUpstream, testEnv, type TestGateway } from '../helpers/gateway.ts'
import { rawRequest, type RawReply } from '../helpers/raw.ts'

const env = testEnv()

/** A gateway with one route `public` for `/public` only. */
async function publicOnly(upstreamUrl: string, listener: Partial<ConfigInput['listeners'][number]> = {}, route: Partial<ConfigInput['routes'][number]> = {}): Promise<TestGateway> {
  return env.gateway({
    listeners: [{ address: '127.0.0.1:0', ...listener }],
    routes: [{ name: 'public', match: { path_prefix: '/public' }, upstream: 'app', ...route }],
    upstreams: { app: { endpoints: [upstreamUrl] } },
  })
}

function get(target: string): string {
  return `GET ${target} HTTP/1.1\r\nHost: app.test\r\n\r\n`
}

/** Checks a proxy-generated answer: status, Proxy-Status type and details, and the access log line with the path as received. */
async function expectRefused(gw: TestGateway, r: RawReply, status: number, type: string, name: string | null, target: string): Promise<void> {
  assert.equal(r.status, status, r.bytes.toString('latin1').slice(0, 300))
  const own = parseProxyStatus(r.get('proxy-status') ?? '').at(-1)
  assert.equal(own?.params.error, type)
  if (name !== null) assert.equal(own?.params.details, name)
  const id = r.get('x-request-id') ?? ''
  const rec = await gw.record(id)
  assert.equal(rec.status, status)
  assert.equal(rec.error, type)
  assert.equal(rec.path, target, 'the log keeps the path as received')
  if (name !== null) assert.ok(rec.details?.startsWith(`${name}: `), `details ${rec.details}`)
}

test('normalizeTarget: dot-segments removed, unreserved escapes decoded, others upper-cased, query untouched', () => {
  const keep = (t: string) => normalizeTarget(t, 'keep')
  assert.equal(keep('/a/b/c'), '/a/b/c')
  assert.equal(keep('/a/./b/../c'), '/a/c')
  assert.equal(keep('/a/b/..'), '/a/')
  assert.equal(keep('/a/b/.'), '/a/b/')
  assert.equal(keep('/a/%2e%2E/b'), '/b')
  assert.equal(keep('/a/.%2e/b'), '/b')
  assert.equal(keep('/%7euser/%41%3a%2f?q=/../x%2e'), '/~user/A%3A%2F?q=/../x%2e')
  assert.equal(keep('/a//../b'), '/a/b')
  assert.equal(keep('*'), '*')
  assert.deepEqual(normalizeTarget('/a/%2f', 'reject'), { problem: 'path_encoded_slash', detail: 'the path contains an encoded slash (%2F); listeners[].encoded_slashes is reject' })
  assert.equal((keep('/..') as { problem: string }).problem, 'path_above_root')
  assert.equal((keep('/a/../../b') as { problem: string }).problem, 'path_above_root')
  assert.equal((keep('/a/..;/b') as { problem: string }).problem, 'path_ambiguous_dot_segment')
  assert.equal((keep('/a/..%2fb') as { problem: string }).problem, 'path_ambiguous_dot_segment')
  assert.equal((keep('/a/..\\b') as { problem: string }).problem, 'path_ambiguous_dot_segment')
  assert.equal((keep('/a/%zz') as { problem: string }).problem, 'path_bad_encoding')
  assert.equal((keep('/a/%00') as { problem: string }).problem, 'path_bad_encoding')
  assert.equal((keep('/a/%2') as { problem: string }).problem, 'path_bad_encoding')
  // The fast path returns the very string: nothing to do costs nothing.
  const plain = '/public/items?id=1'
  assert.equal(normalizeTarget(plain, 'reject'), plain)
})

test('dot-segments in every spelling cannot leave /public: 404 like nginx, and the upstream sees nothing', async () => {
  const up = await recordingUpstream(env)
  const gw = await publicOnly(up.url)
  for (const target of ['/public/../private/secret', '/public/%2e%2e/private/secret', '/public/%2E%2E/private/secret',
    '/public/.%2e/private/secret', '/public/%2e./private/secret', '/public/./../private/secret']) {
    const r = await rawRequest(gw.port, get(target))
    await expectRefused(gw, r, 404, 'destination_not_found', null, target)
  }
  assert.equal(up.seen.length, 0)
})

test('paths that cannot be normalised get their own 400, and the connection closes', async () => {
  const up = await recordingUpstream(env)
  const gw = await publicOnly(up.url)
  const cases: Array<[string, string]> = [
    ['/public/%2e%2e%2fprivate', 'path_encoded_slash'],
    ['/public/..%2Fprivate', 'path_encoded_slash'],
    ['/public/..;/private/secret', 'path_ambiguous_dot_segment'],
    ['/public/..\\private', 'path_ambiguous_dot_segment'],
    ['/public/../../etc/passwd', 'path_above_root'],
    ['/%2e%2e/public', 'path_above_root'],
    ['/public/%zz', 'path_bad_encoding'],
    ['/public/a%00b', 'path_bad_encoding'],
  ]
  for (const [target, name] of cases) {
    const r = await rawRequest(gw.port, get(target))
    await expectRefused(gw, r, 400, 'http_request_error', name, target)
    assert.equal(r.get('connection'), 'close')
    assert.ok(r.closed, `${target}: connection closed after the 400`)
  }
  assert.equal(up.seen.length, 0)
})

test('the upstream sees the normalised path, with the query as sent; the log keeps the path as received', async () => {
  const up = await recordingUpstream(env)
  const gw = await publicOnly(up.url)
  const target = '/public/a/../b/%7euser/./%41?x=/../y&z=%2e%2e'
  const r = await rawRequest(gw.port, get(target))
  assert.equal(r.status, 200)
  assert.equal(up.seen.at(-1)?.url, '/public/b/~user/A?x=/../y&z=%2e%2e')
  const rec = await gw.record(r.get('x-request-id') ?? '')
  assert.equal(rec.path, target)
  assert.equal(rec.route, 'public')
  assert.equal(rec.error, null)
})

test('strip_prefix removes the prefix of the normalised path', async () => {
  const up = await recordingUpstream(env)
  const gw = await publicOnly(up.url, {}, { strip_prefix: true })
  const r = await rawRequest(gw.port, get('/public/x/../y'))
  assert.equal(r.status, 200)
  assert.equal(up.seen.at(-1)?.url, '/y')
  // "/public/.." is "/", which the /public route does not match.
  const escape = await rawRequest(gw.port, get('/public/..'))
  assert.equal(escape.status, 404)
  assert.equal(up.seen.length, 1)
})

test('encoded_slashes: keep routes and forwards %2F encoded, never as a separator', async () => {
  const up = await recordingUpstream(env)
  const gw = await publicOnly(up.url, { encoded_slashes: 'keep' })
  const r = await rawRequest(gw.port, get('/public/group%2fproject'))
  assert.equal(r.status, 200)
  assert.equal(up.seen.at(-1)?.url, '/public/group%2Fproject')
  const ambiguous = await rawRequest(gw.port, get('/public/%2e%2e%2fprivate'))
  await expectRefused(gw, ambiguous, 400, 'http_request_error', 'path_ambiguous_dot_segment', '/public/%2e%2e%2fprivate')
  assert.equal(up.seen.length, 1)
})

test('normalizeTarget: overlong UTF-8 is refused, double-encoded dot-segments at any depth are refused, other escapes kept', () => {
  const keep = (t: string) => normalizeTarget(t, 'keep')
  for (const t of ['/public/%c0%ae%c0%ae/private', '/a/%C0%AF', '/a/%C1%9C', '/a/%e0%80%ae', '/a/%F0%80%80%AE']) {
    assert.equal((keep(t) as { problem?: string }).problem, 'path_bad_encoding', t)
  }
  for (const t of ['/public/%252e%252e/private', '/a/%252E', '/a/..%252fx', '/a/..%255Cx', '/a/%25252e%25252e/x', '/a/b;%252e%252e']) {
    assert.equal((keep(t) as { problem?: string }).problem, 'path_ambiguous_dot_segment', t)
  }
  // Valid UTF-8, legacy Latin-1 escapes and escaped percents that spell no dot-segment go on.
  for (const [t, want] of [['/a/%c3%a9', '/a/%C3%A9'], ['/a/%E9t%E9', '/a/%E9t%E9'], ['/a/%e0%a4%85', '/a/%E0%A4%85'], ['/a/%f0%90%80%80', '/a/%F0%90%80%80'], ['/a/100%25', '/a/100%25'], ['/a/%252ex', '/a/%252ex'], ['/a/%2525', '/a/%2525']]) {
    assert.equal(keep(t), want, t)
  }
})

test('overlong UTF-8 and double-encoded dot-segments over a raw socket: 400, never forwarded (nginx forwards them as they are)', async () => {
  const up = await recordingUpstream(env)
  const gw = await publicOnly(up.url)
  for (const [target, name] of [['/public/%c0%ae%c0%ae/private', 'path_bad_encoding'], ['/public/%252e%252e/private', 'path_ambiguous_dot_segment']]) {
    const r = await rawRequest(gw.port, get(target))
    await expectRefused(gw, r, 400, 'http_request_error', name, target)
  }
  assert.equal(up.seen.length, 0)
})

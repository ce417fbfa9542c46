/**
 * The "validate request" phase over raw sockets: two Host fields, an HTTP/2.0 request line
 * on an HTTP/1.1 listener, a transfer coding other than chunked, TRACE and CONNECT,
 * absolute-form targets. Each refusal has its status, Proxy-Status, log line, and never
 * reaches the upstream; the refusal table and docs/causes.md stay in step.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { CAUSES } from '../../src/failures/causes.ts'
import { parseProxyStatus } from '../../src/failures/proxy-status.ts'
import { REFUSAL_NAMES, REFUSALS } from '../../src/failures/refusals.ts'
import { recordingUpstream, testEnv, type TestGateway } from '../helpers/gateway.ts'
import { rawRequest, type RawReply } from '../helpers/raw.ts'

const env = testEnv()

async function gatewayTo(url: string, listener: Record<string, unknown> = {}): Promise<TestGateway> {
  return env.gateway({
    listeners: [{ address: '127.0.0.1:0', ...listener }],
    routes: [{ name: 'default', upstream: 'app' }],
    upstreams: { app: { endpoints: [url] } },
  })
}

async function expectRefusal(gw: TestGateway, r: RawReply, name: keyof typeof REFUSALS, method: string): Promise<void> {
  const refusal = REFUSALS[name]
  assert.equal(r.status, refusal.status, r.bytes.toString('latin1').slice(0, 300))
  const own = parseProxyStatus(r.get('proxy-status') ?? '').at(-1)
  assert.equal(own?.proxy, 'portico')
  assert.equal(own?.params.error, refusal.type)
  assert.equal(own?.params.details, name)
  assert.ok(r.body.toString('utf8').includes(refusal.title.replaceAll('"', '&#34;')), 'the page says the refusal in words')
  const rec = await gw.record(r.get('x-request-id') ?? '')
  assert.equal(rec.status, refusal.status)
  assert.equal(rec.error, refusal.type)
  assert.equal(rec.method, method)
  assert.ok(rec.details?.startsWith(`${name}: `), `details ${rec.details}`)
  assert.equal(rec.upstream, null, 'refused before routing')
}

test('two Host fields: 400 duplicate_host (RFC 9112 §3.2), connection closed', async () => {
  const up = await recordingUpstream(env)
  const gw = await gatewayTo(up.url)
  const r = await rawRequest(gw.port, 'GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n')
  await expectRefusal(gw, r, 'duplicate_host', 'GET')
  assert.ok(r.closed)
  assert.equal(up.seen.length, 0)
})

test('an HTTP/2.0 request line on the HTTP/1.1 listener: 505, nothing proxied', async () => {
  const up = await recordingUpstream(env)
  const gw = await gatewayTo(up.url)
  const r = await rawRequest(gw.port, 'GET / HTTP/2.0\r\nHost: a.test\r\n\r\n')
  await expectRefusal(gw, r, 'http_version_not_supported', 'GET')
  assert.equal(up.seen.length, 0)
})

test('Transfer-Encoding other than chunked alone: 501, nothing proxied', async () => {
  const up = await recordingUpstream(env)
  const gw = await gatewayTo(up.url)
  for (const te of ['gzip, chunked', 'deflate,chunked']) {
    const r = await rawRequest(gw.port, `POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: ${te}\r\n\r\n5\r\nhello\r\n0\r\n\r\n`)
    await expectRefusal(gw, r, 'transfer_coding_not_implemented', 'POST')
    assert.ok(r.closed)
  }
  // Chunked alone still goes through, re-framed.
  const ok = await rawRequest(gw.port, 'POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n')
  assert.equal(ok.status, 200)
  assert.deepEqual(up.seen.map((s) => [s.method, s.body]), [['POST', 'hello']])
})

test('TRACE is denied by default with 405 and Allow; deny_methods: [] proxies it; other methods can be denied', async () => {
  const up = await recordingUpstream(env)
  const gw = await gatewayTo(up.url)
  const r = await rawRequest(gw.port, 'TRACE / HTTP/1.1\r\nHost: a.test\r\nCookie: secret=1\r\n\r\n')
  await expectRefusal(gw, r, 'method_not_allowed', 'TRACE')
  assert.equal(r.get('allow'), 'GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS')
  assert.equal(r.closed, false, 'a denied method is well-formed: the connection stays open')
  assert.equal(up.seen.length, 0)

  const open = await gatewayTo(up.url, { deny_methods: [] })
  assert.equal((await rawRequest(open.port, 'TRACE / HTTP/1.1\r\nHost: a.test\r\n\r\n')).status, 200)
  assert.deepEqual(up.seen.map((s) => s.method), ['TRACE'])

  const strict = await gatewayTo(up.url, { deny_methods: ['TRACE', 'DELETE'] })
  const del = await rawRequest(strict.port, 'DELETE /x HTTP/1.1\r\nHost: a.test\r\n\r\n')
  await expectRefusal(strict, del, 'method_not_allowed', 'DELETE')
  assert.equal(del.get('allow'), 'GET, HEAD, POST, PUT, PATCH, OPTIONS')
  assert.equal(up.seen.length, 1)
})

test('CONNECT is refused with 405 and a log line instead of a silent close', async () => {
  const up = await recordingUpstream(env)
  const gw = await gatewayTo(up.url)
  const r = await rawRequest(gw.port, 'CONNECT internal.test:22 HTTP/1.1\r\nHost: internal.test:22\r\n\r\n')
  await expectRefusal(gw, r, 'method_not_allowed', 'CONNECT')
  assert.ok(r.closed)
  assert.equal(up.seen.length, 0)
})

test('an absolute-form target is refused with 400 target_form', async () => {
  const up = await recordingUpstream(env)
  const gw = await gatewayTo(up.url)
  const r = await rawRequest(gw.port, 'GET http://internal.test/admin HTTP/1.1\r\nHost: a.test\r\n\r\n')
  await expectRefusal(gw, r, 'target_form', 'GET')
  assert.equal(up.seen.length, 0)
})

test('a HEAD refusal has no body', async () => {
  const up = await recordingUpstream(env)
  const gw = await gatewayTo(up.url)
  const r = await rawRequest(gw.port, 'HEAD / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', { headOnly: true })
  assert.equal(r.status, 400)
  assert.equal(r.bytes.toString('latin1').split('\r\n\r\n')[1], '')
})

test('every refusal is documented under its cause in docs/causes.md with its status and hint', () => {
  const docs = readFileSync(new URL('../../docs/causes.md', import.meta.url), 'utf8')
  for (const name of REFUSAL_NAMES) {
    const r = REFUSALS[name]
    assert.equal(CAUSES[r.id].type, r.type)
    const at = docs.indexOf(`\n### ${name}\n`)
    assert.ok(at > 0, `docs/causes.md has no "### ${name}"`)
    const section = docs.slice(at, docs.indexOf('\n## ', at) < 0 ? undefined : docs.indexOf('\n##', at + 5))
    assert.match(section, new RegExp(`- \\*\\*Status:\\*\\* ${r.status}\\b`), `${name}: status`)
    assert.ok(section.includes(r.hint), `${name}: the hint of the table`)
    const cause = docs.lastIndexOf('\n## ', at)
    assert.equal(docs.slice(cause + 4, docs.indexOf('\n', cause + 4)), r.type, `${name} is documented under ## ${r.type}`)
  }
  const documented = [...docs.matchAll(/^### (\S+)$/gm)].map((m) => m[1])
  assert.deepEqual(documented.sort(), [...REFUSAL_NAMES].sort())
})

test('requests the HTTP/1.1 parser refuses get a classified 400 or 431 and a log line, not a bare reply', async () => {
  const up = await recordingUpstream(env)
  const gw = await gatewayTo(up.url, { max_header_size: 1024 })
  const cases: Array<[string, keyof typeof REFUSALS, string]> = [
    ['POST /x HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n', 'malformed_request', 'POST'],
    ['GET /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 'malformed_request', 'GET'],
    ['HELLO\r\n\r\n', 'malformed_request', 'HELLO'],
    [`GET /big HTTP/1.1\r\nHost: a.test\r\nCookie: ${'c'.repeat(2000)}\r\n\r\n`, 'request_header_too_large', 'GET'],
  ]
  for (const [request, name, method] of cases) {
    const r = await rawRequest(gw.port, request)
    const refusal = REFUSALS[name]
    assert.equal(r.status, refusal.status, `${name}: ${r.bytes.toString('latin1').slice(0, 200)}`)
    const own = parseProxyStatus(r.get('proxy-status') ?? '').at(-1)
    assert.equal(own?.params.error, 'http_request_error')
    assert.equal(own?.params.details, name)
    assert.ok(r.closed)
    const rec = await gw.record(r.get('x-request-id') ?? '')
    assert.equal(rec.status, refusal.status)
    assert.equal(rec.error, 'http_request_error')
    assert.equal(rec.method, method)
    assert.ok(rec.details?.startsWith(`${name}: HPE_`), `details ${rec.details}`)
  }
  assert.equal(up.seen.length, 0)
})

test('a request header not finished within timeouts.header_read gets 408 request_header_timeout and a log line', async () => {
  const up = await recordingUpstream(env)
  const gw = await gatewayTo(up.url, { timeouts: { header_read: '300ms' } })
  const r = await rawRequest(gw.port, 'GET /slow HTTP/1.1\r\nHost: a.test\r\nX-Slow: ', { waitMs: 5000 })
  assert.equal(r.status, 408)
  assert.equal(parseProxyStatus(r.get('proxy-status') ?? '').at(-1)?.params.details, 'request_header_timeout')
  const rec = await gw.record(r.get('x-request-id') ?? '')
  assert.equal(rec.status, 408)
  // Node keeps no bytes of a header that timed out: the line has no method or path.
  assert.equal(rec.error, 'http_request_error')
  assert.ok(rec.details?.startsWith('request_header_timeout: '), `details ${rec.details}`)
  assert.equal(up.seen.length, 0)
})

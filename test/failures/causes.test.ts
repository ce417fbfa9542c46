// Keeps the cause table, docs/causes.md and the classifier in step (like fastify's error-code test).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { CAUSES, CAUSE_TYPES, isRetryable, type CauseType } from '../../src/failures/causes.ts'
import { classify, GatewayError, type FailureStage } from '../../src/failures/classify.ts'

const docs = readFileSync(new URL('../../docs/causes.md', import.meta.url), 'utf8')

function errno(code: string, message = code): Error {
  return Object.assign(new Error(message), { code })
}
function named(name: string, message: string, code?: string): Error {
  const e = new Error(message)
  e.name = name
  return code ? Object.assign(e, { code }) : e
}

/** A raw error (as Node, undici or llhttp produce it) for every cause the classifier derives from raw errors. */
const RAW: [CauseType, unknown, FailureStage][] = [
  ['dns_error', errno('ENOTFOUND', 'getaddrinfo ENOTFOUND x.invalid'), 'connect'],
  ['dns_timeout', errno('EAI_AGAIN', 'getaddrinfo EAI_AGAIN example'), 'connect'],
  ['destination_ip_unroutable', errno('EHOSTUNREACH'), 'connect'],
  ['connection_refused', errno('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:1'), 'connect'],
  ['connection_timeout', errno('ETIMEDOUT'), 'connect'],
  ['connection_terminated', errno('ECONNRESET', 'read ECONNRESET'), 'header'],
  ['connection_terminated', errno('UND_ERR_SOCKET', 'other side closed'), 'header'],
  ['tls_protocol_error', errno('ERR_SSL_WRONG_VERSION_NUMBER', 'wrong version number'), 'connect'],
  ['tls_certificate_error', errno('CERT_HAS_EXPIRED', 'certificate has expired'), 'connect'],
  ['tls_certificate_error', errno('ERR_TLS_CERT_ALTNAME_INVALID', "Hostname/IP does not match certificate's altnames"), 'connect'],
  ['tls_certificate_error', errno('DEPTH_ZERO_SELF_SIGNED_CERT', 'self-signed certificate'), 'connect'],
  ['http_protocol_error', named('HTTPParserError', 'Response does not match the HTTP/1.1 protocol'), 'header'],
  ['http_response_header_section_size', errno('UND_ERR_HEADERS_OVERFLOW', 'Headers Overflow Error'), 'header'],
  ['http_response_incomplete', errno('ECONNRESET', 'read ECONNRESET'), 'body'],
  ['http_response_incomplete', errno('UND_ERR_SOCKET', 'other side closed'), 'body'],
  ['proxy_internal_error', new TypeError('undefined is not a function'), 'header'],
]

/** Causes decided by Portico itself (its timers, routing, limits), not read from a raw error. */
const DECIDED = new Set<CauseType>([
  'http_request_error',
  'destination_not_found', 'destination_unavailable', 'connection_limit_reached', 'http_response_timeout',
  'connection_read_timeout', 'http_upgrade_failed', 'http_request_denied', 'http_request_error', 'proxy_configuration_error',
])

test('every cause has a section in docs/causes.md with its status', () => {
  for (const t of CAUSE_TYPES) {
    const section = new RegExp(`^## ${t}\\n\\n- \\*\\*Status:\\*\\* ([^\\n]+)`, 'm').exec(docs)
    assert.ok(section, `docs/causes.md has no "## ${t}" section`)
    const status = CAUSES[t].status
    if (status === null) assert.match(section[1], /aborted/, `${t}: docs should say the connection is aborted`)
    else assert.equal(section[1], String(status), `${t}: docs give status ${section[1]}, table says ${status}`)
    assert.ok(docs.includes(CAUSES[t].hint), `${t}: docs do not give the hint of the table`)
  }
})

test('docs/causes.md names no cause the table does not have', () => {
  const documented = [...docs.matchAll(/^## (\S+)$/gm)].map((m) => m[1])
  assert.deepEqual(documented.sort(), [...CAUSE_TYPES].sort())
})

test('the classifier maps raw errors to the table', () => {
  for (const [expected, err, stage] of RAW) {
    const c = classify(err, stage)
    assert.equal(c.type, expected, `${(err as Error).message} at ${stage}`)
    assert.ok(c.type in CAUSES)
    assert.ok(c.detail.length > 0)
  }
})

/**
 * The folders and files of src/ whose code can put a cause on a request (the request path,
 * the upstream side, the classifier); doctor, lab, config and docs name causes too, but only
 * to read, reproduce or explain them.
 */
const PRODUCERS = ['server', 'proxy', 'protect', 'cache', 'upstream', 'routing', 'failures/classify.ts']

/** The TypeScript sources under `PRODUCERS`, read once. */
function producerSources(): Array<{ file: string; text: string }> {
  const src = new URL('../../src/', import.meta.url)
  const out: Array<{ file: string; text: string }> = []
  for (const entry of PRODUCERS) {
    const path = new URL(entry, src)
    if (!existsSync(path)) continue
    const files = statSync(path).isDirectory()
      ? readdirSync(path, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts')).map((f) => new URL(`${entry}/${f}`, src))
      : [path]
    for (const f of files) out.push({ file: f.pathname, text: readFileSync(f, 'utf8') })
  }
  return out
}

test('every cause is produced: the classifier maps a raw error to it, or request-path code names it', () => {
  const derived = new Set(RAW.map(([t]) => t))
  const sources = producerSources()
  assert.ok(sources.length > 10, `read only ${sources.length} source files`)
  for (const t of CAUSE_TYPES) {
    assert.ok(derived.has(t) || DECIDED.has(t), `${t} is in neither RAW nor DECIDED: say how it is produced`)
    if (!DECIDED.has(t)) continue
    // A decided cause is a literal in the code that decides it (its timer, limit or routing), outside the table itself.
    const users = sources.filter((s) => s.text.includes(`'${t}'`)).map((s) => s.file)
    assert.ok(users.length > 0, `${t} is listed as decided by Portico, but no code under ${PRODUCERS.join(', ')} names it`)
  }
})

test('GatewayError carries its cause and detail through the classifier unchanged, at any stage', () => {
  for (const t of CAUSE_TYPES) {
    for (const stage of ['connect', 'header', 'body'] as const) {
      const c = classify(new GatewayError(t, `detail of ${t}`), stage)
      assert.equal(c.type, t, `${t} at ${stage}`)
      assert.match(c.detail, new RegExp(`detail of ${t}`), `${t} at ${stage}`)
    }
  }
})

test('every status is a gateway-appropriate status or null for mid-body causes', () => {
  for (const t of CAUSE_TYPES) {
    const c = CAUSES[t]
    if (c.phase === 'mid_body') assert.equal(c.status, null, t)
    else assert.ok(c.status !== null && c.status >= 400 && c.status < 600, t)
  }
})

test('retry rules: before-send causes always, resets before the header only for idempotent methods', () => {
  assert.equal(isRetryable('connection_refused', false), true)
  assert.equal(isRetryable('connection_terminated', true), true)
  assert.equal(isRetryable('connection_terminated', false), false)
  assert.equal(isRetryable('http_response_timeout', true), false)
  assert.equal(isRetryable('http_response_incomplete', true), false)
})

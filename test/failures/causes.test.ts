// Keeps the cause table, docs/causes.md and the classifier in step (like fastify's error-code test).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { CAUSES, CAUSE_IDS, CAUSE_TYPES, causeOf, isRetryable, isUpstreamFailure, type CauseId } from '../../src/failures/causes.ts'
import { classify, GatewayError, type FailureStage } from '../../src/failures/classify.ts'
import { isBefore, LIFECYCLE_PHASES } from '../../src/failures/lifecycle.ts'
import { sourceFiles } from '../helpers/files.ts'

const docs = readFileSync(new URL('../../docs/causes.md', import.meta.url), 'utf8')
const SRC = fileURLToPath(new URL('../../src/', import.meta.url))

function errno(code: string, message = code): Error {
  return Object.assign(new Error(message), { code })
}
function named(name: string, message: string, code?: string): Error {
  const e = new Error(message)
  e.name = name
  return code ? Object.assign(e, { code }) : e
}

/** A raw error (as Node, undici or llhttp produce it) for every cause the classifier derives from raw errors. */
const RAW: [CauseId, unknown, FailureStage][] = [
  ['dns_error', errno('ENOTFOUND', 'getaddrinfo ENOTFOUND x.invalid'), 'connect'],
  ['dns_timeout', errno('EAI_AGAIN', 'getaddrinfo EAI_AGAIN example'), 'connect'],
  ['destination_ip_unroutable', errno('EHOSTUNREACH'), 'connect'],
  ['connection_refused', errno('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:1'), 'connect'],
  ['connection_timeout', errno('ETIMEDOUT'), 'connect'],
  ['http_response_timeout', errno('ETIMEDOUT'), 'await_response_header'],
  ['connection_terminated', errno('ECONNRESET', 'read ECONNRESET'), 'await_response_header'],
  ['connection_terminated', errno('UND_ERR_SOCKET', 'other side closed'), 'await_response_header'],
  ['tls_protocol_error', errno('ERR_SSL_WRONG_VERSION_NUMBER', 'wrong version number'), 'connect'],
  ['tls_certificate_error', errno('CERT_HAS_EXPIRED', 'certificate has expired'), 'connect'],
  ['tls_certificate_error', errno('ERR_TLS_CERT_ALTNAME_INVALID', "Hostname/IP does not match certificate's altnames"), 'connect'],
  ['tls_certificate_error', errno('DEPTH_ZERO_SELF_SIGNED_CERT', 'self-signed certificate'), 'connect'],
  ['http_protocol_error', named('HTTPParserError', 'Response does not match the HTTP/1.1 protocol'), 'await_response_header'],
  ['http_response_header_section_size', errno('UND_ERR_HEADERS_OVERFLOW', 'Headers Overflow Error'), 'await_response_header'],
  ['http_response_incomplete', errno('ECONNRESET', 'read ECONNRESET'), 'stream_response'],
  ['http_response_incomplete', errno('UND_ERR_SOCKET', 'other side closed'), 'stream_response'],
  ['proxy_internal_error', new TypeError('undefined is not a function'), 'await_response_header'],
]

/**
 * Rows decided by Portico itself (its timers, routing, limits, request rules), not read
 * from a raw error: each is named in src/ outside the cause table (a variant by its id or,
 * as the "validate request" phase does, by its refusal name).
 */
const DECIDED = new Set<CauseId>([
  'destination_not_found', 'destination_unavailable', 'connection_limit_reached', 'http_response_timeout',
  'connection_read_timeout', 'http_upgrade_failed', 'http_request_error.client_body_timeout',
  'http_request_error.path_bad_encoding', 'http_request_error.path_encoded_slash', 'http_request_error.path_above_root',
  'http_request_error.path_ambiguous_dot_segment', 'http_request_error.target_form', 'http_request_error.duplicate_host', 'http_request_error.invalid_host',
  'http_request_error.http_version_not_supported', 'http_request_error.transfer_coding_not_implemented',
  'http_request_error.invalid_method', 'http_request_error.malformed_request', 'http_request_error.uri_too_long', 'http_request_error.request_header_too_large', 'http_request_error.request_header_timeout',
  'http_request_denied.method_not_allowed', 'http_request_denied.body_too_large', 'http_request_denied.client_request_limit',
  'http_request_denied.access_rule', 'http_request_denied.rate_limited',
  'proxy_configuration_error',
])

/** Rows no code produces yet. */
const RESERVED = new Set<CauseId>([])

/**
 * The folders and files of src/ whose code can put a cause on a request (the request path,
 * the upstream side, the classifier); doctor, lab, config and docs name causes too, but only
 * to read, reproduce or explain them.
 */
const PRODUCERS = ['server', 'proxy', 'protect', 'cache', 'upstream', 'routing', 'failures/classify.ts']

/** The heading of a row in docs/causes.md: `## type` for a type's one row, `### variant` under `## type` for a variant. */
function heading(id: CauseId): string {
  const dot = id.indexOf('.')
  return dot < 0 ? `## ${id}` : `### ${id.slice(dot + 1)}`
}

/** The docs section of a row: its bullet lines, by label. */
function section(id: CauseId): Map<string, string> {
  const start = docs.indexOf(`\n${heading(id)}\n\n`)
  assert.ok(start >= 0, `docs/causes.md has no "${heading(id)}" section`)
  const cause = docs.lastIndexOf('\n## ', start)
  assert.equal(docs.slice(cause + 4, docs.indexOf('\n', cause + 4)), CAUSES[id].type, `${id} is documented under ## ${CAUSES[id].type}`)
  const end = docs.slice(start + 1).search(/\n##+ /)
  const text = docs.slice(start, end < 0 ? undefined : start + 1 + end)
  return new Map([...text.matchAll(/^- \*\*([^*]+):\*\* (.*)$/gm)].map((m) => [m[1], m[2]]))
}

test('every row has a section in docs/causes.md giving what the table says', () => {
  for (const id of CAUSE_IDS) {
    const c = CAUSES[id]
    const s = section(id)
    const status = s.get('Status') ?? ''
    if (c.status === null) assert.match(status, /aborted/, `${id}: docs should say the connection is aborted`)
    else assert.equal(status, String(c.status), `${id}: docs give status ${status}, table says ${c.status}`)
    assert.equal(s.get('Retry-After'), c.retryAfterS === null ? undefined : String(c.retryAfterS), `${id}: Retry-After`)
    assert.equal(s.get('Source'), c.source, `${id}: source`)
    assert.equal(s.get('Proxy-Status'), `\`portico; error=${c.type}\``, `${id}: Proxy-Status`)
    assert.equal(s.get('Phase'), c.phase ?? 'any', `${id}: phase`)
    assert.ok(s.get('Meaning')?.startsWith(c.title), `${id}: the meaning starts with the table's title`)
    assert.equal(s.get('Check first'), c.hint, `${id}: hint`)
    assert.equal(s.get('Fix (Portico)'), c.fix.portico, `${id}: Portico fix`)
    assert.equal(s.get('Fix (nginx)'), c.fix.nginx, `${id}: nginx fix`)
    for (const [detail, text] of Object.entries(c.fix.nginxDetails ?? {})) {
      assert.ok(docs.includes(`  - \`${detail}\`: ${text}\n`), `${id}: docs do not give the nginx fix for ${detail}`)
    }
  }
})

test('docs/causes.md names no row the table does not have, and its summary table follows the table', () => {
  const documented = [...docs.matchAll(/^##+ (\S+)$/gm)].map((m) => m[1])
  assert.deepEqual(documented, [...CAUSE_TYPES.flatMap((t) => {
    const rows = CAUSE_IDS.filter((id) => CAUSES[id].type === t)
    return rows.length === 1 && rows[0] === t ? [t] : [t, ...rows.map((id) => id.slice(id.indexOf('.') + 1))]
  })])
  const summary = [...docs.matchAll(/^\| \[`([^`]+)`\]\(#([^)]+)\) \| (\w+) \| (.+) \|$/gm)]
  assert.deepEqual(summary.map((m) => m[1]), [...CAUSE_IDS])
  for (const [, id, anchor, status, title] of summary) {
    const c = CAUSES[id as CauseId]
    assert.equal(anchor, heading(id as CauseId).replace(/^#+ /, ''), `${id}: anchor as GitHub writes it`)
    assert.equal(status, c.status === null ? 'aborted' : String(c.status), id)
    assert.equal(title, c.title, id)
  }
})

test('the classifier maps raw errors to the table', () => {
  for (const [expected, err, stage] of RAW) {
    const c = classify(err, stage)
    assert.equal(c.causeId, expected, `${(err as Error).message} at ${stage}`)
    assert.equal(c.type, CAUSES[c.causeId].type)
    assert.ok(c.detail.length > 0)
  }
})

test('every row is derived from raw errors, decided by Portico (and named in src/), or reserved', () => {
  const derived = new Set(RAW.map(([t]) => t))
  const sources = PRODUCERS.flatMap((p) => (p.endsWith('.ts') ? [path.join(SRC, p)] : sourceFiles(path.join(SRC, p)))).map((f) => readFileSync(f, 'utf8'))
  assert.ok(sources.length > 10, `read only ${sources.length} source files`)
  for (const id of CAUSE_IDS) {
    if (RESERVED.has(id)) assert.ok(!derived.has(id) && !DECIDED.has(id), `${id} is produced: it is not reserved`)
    else assert.ok(derived.has(id) || DECIDED.has(id), `${id} is produced by nothing`)
    const variant = id.slice(id.indexOf('.') + 1)
    const named = (s: string) => s.includes(`'${id}'`) || (id.includes('.') && (s.includes(`'${variant}'`) || s.includes(`REFUSALS.${variant}`)))
    if (DECIDED.has(id)) assert.ok(sources.some(named), `${id} is decided by Portico but no code under ${PRODUCERS.join(', ')} names it`)
  }
  for (const id of [...DECIDED, ...RESERVED]) assert.ok(id in CAUSES, `${id} is not a row`)
})

test('GatewayError carries its row unchanged through the classifier, at every stage', () => {
  for (const id of CAUSE_IDS) {
    for (const stage of ['connect', 'await_response_header', 'stream_response'] as const) {
      const c = classify(new GatewayError(id, 'x'), stage)
      assert.equal(c.causeId, id)
      assert.equal(c.type, CAUSES[id].type)
    }
  }
})

test('rows are named by their RFC 9209 type, or type.variant; variant names are unique', () => {
  assert.deepEqual([...new Set(CAUSE_TYPES)], [...CAUSE_TYPES], 'CAUSE_TYPES lists each type once')
  assert.deepEqual(new Set(CAUSE_IDS.map((id) => CAUSES[id].type)), new Set(CAUSE_TYPES))
  for (const id of CAUSE_IDS) {
    const c = CAUSES[id]
    assert.equal(c.id, id)
    assert.ok(id === c.type || id.startsWith(`${c.type}.`), `${id} is not named after its type ${c.type}`)
    if (id !== c.type) assert.equal(CAUSE_IDS.filter((o) => o.endsWith(`.${id.slice(c.type.length + 1)}`)).length, 1, `${id}: variant names are unique`)
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.fix), `${id} is frozen`)
    // Where only the type and the status are known (an access log line), they find a row of that status.
    assert.equal(causeOf(c.type, c.status).type, c.type, `causeOf(${c.type}, ${c.status})`)
    assert.equal(causeOf(c.type, c.status).status, c.status, `causeOf(${c.type}, ${c.status})`)
    const siblings = CAUSE_IDS.filter((o) => CAUSES[o].type === c.type)
    if (siblings.length > 1) assert.ok(id !== c.type, `${c.type} has variants, so no row may be the bare type`)
    for (const o of siblings) assert.equal(CAUSES[o].retry, c.retry, `${id} and ${o}: one retry rule per type`)
  }
  assert.equal(causeOf('http_request_denied', 413).id, 'http_request_denied.body_too_large')
  assert.equal(causeOf('http_request_denied', 429).id, 'http_request_denied.rate_limited')
  assert.equal(causeOf('http_request_denied', 403).id, 'http_request_denied.access_rule')
  assert.equal(causeOf('connection_refused').id, 'connection_refused')
})

test('statuses: null exactly for causes that arise while the response streams; the client\'s faults 4xx; the others 5xx', () => {
  for (const id of CAUSE_IDS) {
    const c = CAUSES[id]
    assert.equal(c.status === null, c.phase === 'stream_response', `${id}: status ${c.status} in phase ${c.phase}`)
    if (c.status === null) continue
    // A client's fault is a 4xx, or 501/505 for a transfer coding or HTTP version Portico does not implement (RFC 9110 §15.6.2, §15.6.6).
    if (c.source === 'downstream') assert.ok((c.status >= 400 && c.status < 500) || c.status === 501 || c.status === 505, id)
    else if (id !== 'destination_not_found') assert.ok(c.status >= 500 && c.status < 600, id)
  }
})

test('sources: only the endpoint\'s faults count against it (outlier detection, its last error)', () => {
  const notUpstream = CAUSE_IDS.filter((id) => CAUSES[id].source !== 'upstream')
  assert.deepEqual(notUpstream.filter((id) => !id.startsWith('http_request_')), [
    'destination_not_found', 'destination_unavailable', 'connection_limit_reached', 'proxy_configuration_error', 'proxy_internal_error',
  ])
  assert.deepEqual(CAUSE_IDS.filter((id) => id.startsWith('http_request_')).filter((id) => !notUpstream.includes(id)), [])
  for (const id of CAUSE_IDS) {
    const c = CAUSES[id]
    assert.equal(isUpstreamFailure(c.type), c.source === 'upstream', id)
    if (c.type.startsWith('http_request_')) assert.equal(c.source, 'downstream', `${id}: a refusal is the client's`)
  }
})

test('phases come from the lifecycle list; retry rules follow them', () => {
  for (const id of CAUSE_IDS) {
    const c = CAUSES[id]
    if (c.phase === null) {
      assert.equal(id, 'proxy_internal_error', 'only Portico\'s own failure belongs to no phase')
      continue
    }
    assert.ok(LIFECYCLE_PHASES.includes(c.phase), `${id}: ${c.phase}`)
    // "Always" retryable means nothing reached the upstream: the cause arises before the request is sent.
    if (c.retry === 'always') assert.ok(isBefore(c.phase, 'send_request'), `${id} is always retryable but arises in ${c.phase}`)
    if (c.retry === 'idempotent') assert.ok(!isBefore(c.phase, 'send_request'), `${id}`)
    if (c.source === 'downstream') assert.ok(isBefore(c.phase, 'select_endpoint') || c.phase === 'send_request', `${id}: a refusal is decided before an endpoint, or while reading the body`)
  }
})

test('retry rules: before-send causes always, resets before the header only for idempotent methods', () => {
  assert.equal(isRetryable('connection_refused', false), true)
  assert.equal(isRetryable('dns_error', false), true)
  assert.equal(isRetryable('connection_terminated', true), true)
  assert.equal(isRetryable('connection_terminated', false), false)
  assert.equal(isRetryable('http_response_timeout', true), false)
  assert.equal(isRetryable('http_response_incomplete', true), false)
  // Decided locally at endpoint selection: another endpoint does not help.
  assert.equal(isRetryable('connection_limit_reached', true), false)
  assert.equal(isRetryable('destination_unavailable', true), false)
  assert.equal(isRetryable('http_request_denied', true), false)
  assert.equal(isRetryable('http_request_error', true), false)
  assert.equal(causeOf('http_request_error', 408).id, 'http_request_error.client_body_timeout')
  assert.equal(causeOf('http_request_denied', 405).id, 'http_request_denied.method_not_allowed')
})

test('Retry-After: only the overload causes send one, 5 s for the upstream side, 1 s for a client over its own cap', () => {
  const withRetryAfter = CAUSE_IDS.filter((id) => CAUSES[id].retryAfterS !== null)
  assert.deepEqual(withRetryAfter, ['destination_unavailable', 'connection_limit_reached', 'http_request_denied.client_request_limit'])
  assert.equal(CAUSES.destination_unavailable.retryAfterS, 5)
  assert.equal(CAUSES.connection_limit_reached.retryAfterS, 5)
  // Requests in progress end in moments: the client may try again soon.
  assert.equal(CAUSES['http_request_denied.client_request_limit'].retryAfterS, 1)
})

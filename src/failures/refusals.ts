/**
 * Refusals: requests Portico answers itself, before routing, because they are malformed,
 * ambiguous or denied by the listener's rules. Each is a variant of a cause of the cause
 * table (`http_request_error` or `http_request_denied`) with its own status and title, so
 * the response, the access log (`error`, and `details` starting with the refusal's name)
 * and docs/causes.md name it precisely.
 *
 * Adding a refusal means adding a row here and a `### <name>` entry under its cause in
 * docs/causes.md; test/protect/refusals.test.ts keeps the two in step.
 */
import type { CauseType } from './causes.ts'

/** The name of a refusal, sent as `details` of `Proxy-Status` and first in the log's `details`. */
export type RefusalName =
  | 'path_bad_encoding'
  | 'path_encoded_slash'
  | 'path_above_root'
  | 'path_ambiguous_dot_segment'
  | 'target_form'
  | 'duplicate_host'
  | 'http_version_not_supported'
  | 'transfer_coding_not_implemented'
  | 'method_not_allowed'
  | 'malformed_request'
  | 'request_header_too_large'
  | 'request_header_timeout'

/** One refusal: its cause, status and words. */
export interface Refusal {
  readonly name: RefusalName
  /** The RFC 9209 type it is a variant of (`Proxy-Status: portico; error=<type>`). */
  readonly type: CauseType
  readonly status: number
  /** The refusal in plain words, for the error page and docs. */
  readonly title: string
  /** What the client should change, for the error page and docs. */
  readonly hint: string
}

const rows: readonly Refusal[] = [
  {
    name: 'path_bad_encoding', type: 'http_request_error', status: 400,
    title: 'The request path has a malformed or forbidden percent-encoding',
    hint: 'Encode the path as RFC 3986 §2.1 says: "%" followed by two hex digits, and never %00.',
  },
  {
    name: 'path_encoded_slash', type: 'http_request_error', status: 400,
    title: 'The request path contains an encoded slash (%2F)',
    hint: 'Send "/" unencoded, or set listeners[].encoded_slashes to keep when the application needs %2F.',
  },
  {
    name: 'path_above_root', type: 'http_request_error', status: 400,
    title: 'The request path climbs above the root with dot-segments',
    hint: 'Send the path without ".." segments that go above "/".',
  },
  {
    name: 'path_ambiguous_dot_segment', type: 'http_request_error', status: 400,
    title: 'A request path segment is a dot-segment once split at ";", "%2F" or a backslash',
    hint: 'Send the path without "..;", "..%2F" or "..\\" segments.',
  },
  {
    name: 'target_form', type: 'http_request_error', status: 400,
    title: 'The request target is not a path (absolute-form is for forward proxies)',
    hint: 'Send the path and query only, with the host in Host (RFC 9112 §3.2.1).',
  },
  {
    name: 'duplicate_host', type: 'http_request_error', status: 400,
    title: 'The request has more than one Host header field',
    hint: 'Send exactly one Host field (RFC 9112 §3.2).',
  },
  {
    name: 'http_version_not_supported', type: 'http_request_error', status: 505,
    title: 'The request line names an HTTP version this listener does not speak',
    hint: 'Send HTTP/1.1 or HTTP/1.0 on this listener; HTTP/2 is offered over TLS by ALPN.',
  },
  {
    name: 'transfer_coding_not_implemented', type: 'http_request_error', status: 501,
    title: 'The request uses a transfer coding other than chunked',
    hint: 'Send the body with Content-Length or with Transfer-Encoding: chunked alone (RFC 9112 §6.1).',
  },
  {
    name: 'malformed_request', type: 'http_request_error', status: 400,
    title: 'The request is not valid HTTP/1.1',
    hint: 'Fix the client: the request line or a header field broke the HTTP/1.1 grammar (RFC 9112), e.g. a bad method, a space in the target, or conflicting framing.',
  },
  {
    name: 'request_header_too_large', type: 'http_request_error', status: 431,
    title: 'The request header section is larger than the listener accepts',
    hint: 'Send fewer or smaller header fields (often cookies), or raise listeners[].max_header_size.',
  },
  {
    name: 'request_header_timeout', type: 'http_request_error', status: 408,
    title: 'The client did not send its request header in time',
    hint: 'The client sent part of a request header and went silent for longer than listeners[].timeouts.header_read (a slow client, or slowloris).',
  },
  {
    name: 'method_not_allowed', type: 'http_request_denied', status: 405,
    title: 'The request method is denied on this listener',
    hint: 'The method is in listeners[].deny_methods (TRACE by default); CONNECT is never proxied.',
  },
]

/** The refusals, keyed by name. Frozen. */
export const REFUSALS: Readonly<Record<RefusalName, Refusal>> = Object.freeze(
  Object.fromEntries(rows.map((r) => [r.name, Object.freeze(r)])) as Record<RefusalName, Refusal>,
)

/** Every refusal name, in table order. */
export const REFUSAL_NAMES: readonly RefusalName[] = Object.freeze(rows.map((r) => r.name))

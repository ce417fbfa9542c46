/**
 * The cause table: every gateway failure Portico can name, with its RFC 9209 error type,
 * the status Portico answers with, whether another endpoint may be tried, and the words
 * the error page, the docs and `portico doctor` reuse.
 *
 * Adding a cause means adding a row here, a section in docs/causes.md and a mapping in
 * classify.ts; test/failures/causes.test.ts keeps the three in step.
 *
 * Source: RFC 9209 §2.3 (Proxy Error Types).
 */

/** An RFC 9209 proxy error type produced by Portico. */
export type CauseType =
  | 'dns_error'
  | 'dns_timeout'
  | 'destination_not_found'
  | 'destination_unavailable'
  | 'destination_ip_unroutable'
  | 'connection_refused'
  | 'connection_timeout'
  | 'connection_terminated'
  | 'connection_limit_reached'
  | 'tls_protocol_error'
  | 'tls_certificate_error'
  | 'http_response_timeout'
  | 'http_protocol_error'
  | 'http_response_header_section_size'
  | 'http_response_incomplete'
  | 'connection_read_timeout'
  | 'http_upgrade_failed'
  | 'http_request_error'
  | 'http_request_denied'
  | 'http_request_error'
  | 'proxy_configuration_error'
  | 'proxy_internal_error'

/**
 * When in the request lifecycle a cause can happen:
 * - `before_send`: nothing reached the upstream (safe to retry any method);
 * - `before_header`: the request was (maybe) sent but no response header arrived;
 * - `mid_body`: the response status was already sent downstream, so the only honest
 *   signal left is aborting the downstream connection;
 * - `local`: decided by Portico without talking to an upstream.
 */
export type CausePhase = 'before_send' | 'before_header' | 'mid_body' | 'local'

/** One row of the cause table. */
export interface Cause {
  /** RFC 9209 error type, used verbatim in `Proxy-Status: portico; error=<type>`. */
  readonly type: CauseType
  /** Status Portico answers with; `null` when the response had already started (the downstream connection is aborted instead). */
  readonly status: number | null
  /** Lifecycle phase the cause belongs to; decides what may be retried. */
  readonly phase: CausePhase
  /** The cause in plain words, for the error page and doctor. */
  readonly title: string
  /** What to check first, for the error page, docs/causes.md and doctor. */
  readonly hint: string
}

const rows: readonly Cause[] = [
  {
    type: 'dns_error', status: 502, phase: 'before_send',
    title: 'The upstream host name does not resolve',
    hint: 'Check the endpoint host name and the resolver: the name returned NXDOMAIN or SERVFAIL.',
  },
  {
    type: 'dns_timeout', status: 504, phase: 'before_send',
    title: 'The DNS resolver did not answer in time',
    hint: 'Check that the resolver in /etc/resolv.conf is reachable and answering.',
  },
  {
    type: 'destination_not_found', status: 404, phase: 'local',
    title: 'No route matches this request',
    hint: 'Check the routes: no host or path prefix matches this request.',
  },
  {
    type: 'destination_unavailable', status: 503, phase: 'local',
    title: 'No healthy endpoint is left in the upstream pool',
    hint: 'Check the health of the upstream endpoints and why they were marked down.',
  },
  {
    type: 'destination_ip_unroutable', status: 502, phase: 'before_send',
    title: 'The upstream address is unreachable from this host',
    hint: 'Check routing and firewall between the proxy and the upstream (EHOSTUNREACH/ENETUNREACH).',
  },
  {
    type: 'connection_refused', status: 502, phase: 'before_send',
    title: 'The upstream refused the connection',
    hint: 'Nothing listens on that address and port: check that the application is running and the port is right.',
  },
  {
    type: 'connection_timeout', status: 504, phase: 'before_send',
    title: 'Connecting to the upstream timed out',
    hint: 'The TCP connect did not complete: check firewalls dropping packets, that the host is up, and the listen backlog.',
  },
  {
    type: 'connection_terminated', status: 502, phase: 'before_header',
    title: 'The upstream closed the connection before sending a response',
    hint: 'Check the application logs for crashes; on reused connections, make the proxy idle timeout shorter than the upstream keep-alive timeout.',
  },
  {
    type: 'connection_limit_reached', status: 503, phase: 'local',
    title: 'The upstream connection or queue limit was reached',
    hint: 'Raise the endpoint connection limits or add capacity; the upstream is saturated.',
  },
  {
    type: 'tls_protocol_error', status: 502, phase: 'before_send',
    title: 'The TLS handshake with the upstream failed',
    hint: 'Check that the endpoint scheme matches what the port speaks (https:// to a plain-HTTP port fails with "wrong version number").',
  },
  {
    type: 'tls_certificate_error', status: 502, phase: 'before_send',
    title: 'The upstream certificate was not accepted',
    hint: 'Check the certificate expiry, the chain against the CA bundle and that it names the host.',
  },
  {
    type: 'http_response_timeout', status: 504, phase: 'before_header',
    title: 'The upstream did not send a response header in time',
    hint: 'The application is slow or stuck: compare its latency with the response_header timeout.',
  },
  {
    type: 'http_protocol_error', status: 502, phase: 'before_header',
    title: 'The upstream answered with something that is not valid HTTP',
    hint: 'Check that the endpoint speaks plain HTTP/1.1 on that port (TLS bytes or another protocol were received).',
  },
  {
    type: 'http_response_header_section_size', status: 502, phase: 'before_header',
    title: 'The upstream response header section is too large',
    hint: 'Reduce the response headers (often cookies) or raise max_response_header_size.',
  },
  {
    type: 'http_response_incomplete', status: null, phase: 'mid_body',
    title: 'The upstream closed the connection in the middle of the response body',
    hint: 'Check the application logs for crashes or killed workers while writing the response.',
  },
  {
    type: 'connection_read_timeout', status: null, phase: 'mid_body',
    title: 'The upstream stopped sending the response body',
    hint: 'The body stalled longer than the idle timeout: check the application or raise timeouts.idle.',
  },
  {
    type: 'http_upgrade_failed', status: 502, phase: 'before_header',
    title: 'The protocol upgrade (WebSocket) could not be completed',
    hint: 'Check that the upstream accepts the upgrade on this path.',
  },
  {
    type: 'http_request_error', status: 408, phase: 'local',
    title: 'The client did not send its request body in time',
    hint: 'The client went silent while sending its request body for longer than listeners[].timeouts.body_idle: check the client and its network.',
  },
  {
    type: 'http_request_denied', status: 403, phase: 'local',
    title: 'The request was denied by an access rule or rate limit',
    hint: 'Check the access rules and rate limits of the route.',
  },
  {
    type: 'proxy_configuration_error', status: 500, phase: 'local',
    title: 'The proxy configuration cannot serve this request',
    hint: 'Run `portico check -c FILE` and fix the reported problems.',
  },
  {
    type: 'proxy_internal_error', status: 500, phase: 'local',
    title: 'The proxy failed while handling this request',
    hint: 'This is a Portico bug: report it with the request ID and the access log line.',
  },
]

/** The cause table, keyed by RFC 9209 type. Frozen. */
export const CAUSES: Readonly<Record<CauseType, Cause>> = Object.freeze(
  Object.fromEntries(rows.map((r) => [r.type, Object.freeze(r)])) as Record<CauseType, Cause>,
)

/** Every cause type, in table order. */
export const CAUSE_TYPES: readonly CauseType[] = Object.freeze(rows.map((r) => r.type))

/**
 * Whether a failure of this cause may, by its nature, be tried again for a request with
 * this method: causes before anything was sent always; `connection_terminated` (the
 * upstream reset or closed before a response header) for idempotent methods only
 * (RFC 9110 §9.2.2); the others never. `retries.on` decides which of these are retried.
 *
 * @param type the failure's cause
 * @param idempotent whether the request method is idempotent (RFC 9110 §9.2.2)
 */
export function isRetryable(type: CauseType, idempotent: boolean): boolean {
  const phase = CAUSES[type].phase
  if (phase === 'before_send') return true
  if (type === 'connection_terminated') return idempotent
  return false
}

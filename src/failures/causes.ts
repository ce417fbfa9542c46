/**
 * The cause table: every error Portico can name (gateway failures and refusals of a
 * client request), with its RFC 9209 error type, the status Portico answers with, the
 * lifecycle phase it arises in, whether another endpoint may be tried, `Retry-After`,
 * and the words the error page, docs/causes.md and `portico doctor` reuse: title, hint,
 * and the fix in nginx's and in Portico's vocabulary. Nothing else holds these.
 *
 * A row is named by its {@link CauseId}: the RFC 9209 type, or `type.variant` when one
 * type answers with several statuses (`http_request_denied.body_too_large` is 413,
 * `http_request_denied.rate_limited` 429). Adding a cause or a variant means adding a row
 * here, a section in docs/causes.md and, for causes read from raw errors, a mapping in
 * classify.ts; test/failures/causes.test.ts keeps the three in step and checks every
 * Portico key and nginx directive the fixes name.
 *
 * Source: RFC 9209 §2.3 (Proxy Error Types).
 */
import type { LifecyclePhase } from './lifecycle.ts'

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
  | 'proxy_configuration_error'
  | 'proxy_internal_error'

/**
 * Why a client request could not be served as sent (RFC 9209 `http_request_error`): a
 * silent client body, a request the "validate request" phase refuses as malformed or
 * ambiguous (src/protect/validate.ts), or one Node's HTTP/1 parser refuses
 * (src/proxy/client-error.ts).
 */
export type RequestErrorVariant =
  | 'client_body_timeout'
  | 'path_bad_encoding'
  | 'path_encoded_slash'
  | 'path_above_root'
  | 'path_ambiguous_dot_segment'
  | 'target_form'
  | 'duplicate_host'
  | 'invalid_host'
  | 'http_version_not_supported'
  | 'transfer_coding_not_implemented'
  | 'invalid_method'
  | 'malformed_request'
  | 'uri_too_long'
  | 'request_header_too_large'
  | 'request_header_timeout'

/**
 * Why Portico refused a client request by its rules (RFC 9209 `http_request_denied`):
 * a denied method (405), a body over the listener's limit (413), an access rule (403), a
 * rate limit (429) of the route, or the client address's cap of requests in progress (429).
 */
export type RequestDeniedVariant = 'method_not_allowed' | 'body_too_large' | 'access_rule' | 'rate_limited' | 'client_request_limit'

/** The RFC 9209 types whose rows are variants (`type.variant`); each of the others is one row. */
export type VariedCauseType = 'http_request_error' | 'http_request_denied'

/**
 * The name of one row of the cause table: an RFC 9209 type, or `type.variant` for a type
 * with variants. Variant names are unique across types (they are the refusal names of
 * src/failures/refusals.ts).
 */
export type CauseId =
  | Exclude<CauseType, VariedCauseType>
  | `http_request_error.${RequestErrorVariant}`
  | `http_request_denied.${RequestDeniedVariant}`

/**
 * Whether a failure of the cause may, by its nature, go to another try:
 * `always` (nothing reached the upstream), `idempotent` (the request may have reached it,
 * so only idempotent methods, RFC 9110 §9.2.2), `never`.
 */
export type CauseRetry = 'always' | 'idempotent' | 'never'

/**
 * Whose fault a cause is (Pingora's error source): `upstream`, the endpoint's (reported to
 * outlier detection, kept as the endpoint's last error); `downstream`, the client's
 * request; `internal`, Portico's own routing, limits, configuration or code. Only
 * `upstream` causes count against an endpoint.
 */
export type CauseSource = 'upstream' | 'downstream' | 'internal'

/**
 * What to change, per system, for `portico doctor`. Backticked spans are checked by
 * test/failures/causes.test.ts: in `nginx`, directives with their arguments and `;`,
 * each followed by the block they go in (`` in the `location` block ``, `` in the main
 * context ``), or a shell command; in `portico`, key paths of portico.yaml (`upstreams.<name>.…`,
 * where doctor fills in the upstream name), or a shell command.
 */
export interface CauseFix {
  /** The fix in nginx directives. */
  readonly nginx: string
  /** The fix in Portico config keys. */
  readonly portico: string
  /** Added to the nginx fix per machine detail of an nginx error.log line (src/doctor/logs/nginx-error.ts). */
  readonly nginxDetails?: Readonly<Record<string, string>>
}

/** One row of the cause table. */
export interface Cause {
  /** The row's name: the RFC 9209 type, or `type.variant`. */
  readonly id: CauseId
  /** RFC 9209 error type, used verbatim in `Proxy-Status: portico; error=<type>` and the access log. */
  readonly type: CauseType
  /** Status Portico answers with; `null` when the response had already started (the downstream connection is aborted instead). */
  readonly status: number | null
  /** The lifecycle phase the cause arises in; `null` for a cause any phase can raise (Portico's own failure). */
  readonly phase: LifecyclePhase | null
  /** Whose fault it is; only `upstream` causes count against the endpoint. */
  readonly source: CauseSource
  /** Whether another try may follow, by the cause's nature; `retries.on` decides which are retried. */
  readonly retry: CauseRetry
  /** Seconds sent in `Retry-After` (RFC 9110 §10.2.3), or `null` for none. */
  readonly retryAfterS: number | null
  /** The cause in plain words, for the error page and doctor. */
  readonly title: string
  /** What to check first, for the error page, docs/causes.md and doctor. */
  readonly hint: string
  /** What `portico doctor` tells the operator to change. */
  readonly fix: CauseFix
}

/** Seconds a client is told to wait when the pool has no endpoint or no capacity left. */
const RETRY_AFTER_OVERLOAD_S = 5

const rows: readonly Cause[] = [
  {
    id: 'dns_error', type: 'dns_error', status: 502, phase: 'select_endpoint', source: 'upstream', retry: 'always', retryAfterS: null,
    title: 'The upstream host name does not resolve',
    hint: 'Check the endpoint host name and the resolver: the name returned NXDOMAIN or SERVFAIL.',
    fix: {
      nginx: 'Check that the name resolves from the nginx host (`dig NAME`). To follow a backend that moves, set `resolver <DNS IP> valid=30s;` in the `http` block and proxy through a variable (`set $backend NAME:PORT; proxy_pass http://$backend;` in the `location` block), or, from nginx 1.27.3, `zone backend 64k; server NAME:PORT resolve;` in the `upstream` block.',
      portico: 'Check that the host names in `upstreams.<name>.endpoints` resolve from the Portico host (`dig NAME`).',
      nginxDetails: {
        no_resolver: '"no resolver defined": add `resolver <DNS IP> valid=30s;` in the `server` block whose proxy_pass uses a variable.',
        not_resolved_at_start: '"host not found in upstream" at start: nginx refuses to start or reload until the name resolves.',
      },
    },
  },
  {
    id: 'dns_timeout', type: 'dns_timeout', status: 504, phase: 'select_endpoint', source: 'upstream', retry: 'always', retryAfterS: null,
    title: 'The DNS resolver did not answer in time',
    hint: 'Check that the resolver in /etc/resolv.conf is reachable and answering.',
    fix: {
      nginx: 'The resolver did not answer: check that its address is reachable, list a second one and bound the wait with `resolver <DNS IP> <DNS IP 2> valid=30s; resolver_timeout 5s;` in the `http` block.',
      portico: 'Check that the DNS servers of `upstreams.<name>.dns.resolvers` (when unset, those of /etc/resolv.conf) are reachable and answering.',
    },
  },
  {
    id: 'destination_not_found', type: 'destination_not_found', status: 404, phase: 'route', source: 'internal', retry: 'never', retryAfterS: null,
    title: 'No route matches this request',
    hint: 'Check the routes: no host or path prefix matches this request.',
    fix: {
      nginx: 'Check that a `server_name HOST;` in the `server` block and a location prefix match the request.',
      portico: 'Check `routes[].match.host` and `routes[].match.path_prefix`: no route matches this request.',
    },
  },
  {
    id: 'destination_unavailable', type: 'destination_unavailable', status: 503, phase: 'select_endpoint', source: 'internal', retry: 'never', retryAfterS: RETRY_AFTER_OVERLOAD_S,
    title: 'No healthy endpoint is left in the upstream pool',
    hint: 'Check the health of the upstream endpoints and why they were marked down.',
    fix: {
      nginx: 'Every server of the upstream was marked failed (max_fails failures within fail_timeout): fix the backends first; consider `server ADDRESS max_fails=3 fail_timeout=10s; server BACKUP_ADDRESS backup;` in the `upstream` block.',
      portico: 'Every endpoint of `upstreams.<name>` is marked down: fix the endpoints, and check `upstreams.<name>.health_check` (path, interval, timeout).',
    },
  },
  {
    id: 'destination_ip_unroutable', type: 'destination_ip_unroutable', status: 502, phase: 'connect', source: 'upstream', retry: 'always', retryAfterS: null,
    title: 'The upstream address is unreachable from this host',
    hint: 'Check routing and firewall between the proxy and the upstream (EHOSTUNREACH/ENETUNREACH).',
    fix: {
      nginx: 'No route from the nginx host to the backend: check routing, security groups and firewalls; nginx settings cannot fix this.',
      portico: 'No route from the Portico host to the endpoint: check routing and firewalls.',
    },
  },
  {
    id: 'connection_refused', type: 'connection_refused', status: 502, phase: 'connect', source: 'upstream', retry: 'always', retryAfterS: null,
    title: 'The upstream refused the connection',
    hint: 'Nothing listens on that address and port: check that the application is running and the port is right.',
    fix: {
      nginx: 'Nothing listens on that address: start the backend or correct the port (`server HOST:PORT;` in the `upstream` block, or the proxy_pass URL); `proxy_next_upstream error timeout;` in the `location` block lets another server take the request.',
      portico: 'Nothing listens on that endpoint: start the backend or correct the port in `upstreams.<name>.endpoints`; `upstreams.<name>.retries.attempts` lets another endpoint take the request.',
    },
  },
  {
    id: 'connection_timeout', type: 'connection_timeout', status: 504, phase: 'connect', source: 'upstream', retry: 'always', retryAfterS: null,
    title: 'Connecting to the upstream timed out',
    hint: 'The TCP connect did not complete: check firewalls dropping packets, that the host is up, and the listen backlog.',
    fix: {
      nginx: 'The TCP connect did not complete: check firewalls dropping SYNs, that the backend host is up and its listen backlog; keep the connect timeout short so the next server is tried: `proxy_connect_timeout 5s; proxy_next_upstream error timeout;` in the `location` block.',
      portico: 'The TCP connect did not complete: check the backend\'s listen backlog (full when it accepts too slowly: `ss -lnt` shows Recv-Q at Send-Q; raise the application\'s backlog and `sysctl net.core.somaxconn`), firewalls dropping SYNs and that the host is up; keep `upstreams.<name>.timeouts.connect` short (e.g. "2s") so `upstreams.<name>.retries.attempts` can move on.',
    },
  },
  {
    id: 'connection_terminated', type: 'connection_terminated', status: 502, phase: 'await_response_header', source: 'upstream', retry: 'idempotent', retryAfterS: null,
    title: 'The upstream closed the connection before sending a response',
    hint: 'Check the application logs for crashes; on reused connections, make the proxy idle timeout shorter than the upstream keep-alive timeout.',
    fix: {
      nginx: 'The backend closed or reset before answering: check its logs for crashes. On reused connections this is the keep-alive race: keep idle connections for less than the backend\'s keep-alive timeout, e.g. `keepalive_timeout 4s;` in the `upstream` block for a 5s backend; `proxy_next_upstream error timeout;` in the `location` block retries idempotent requests.',
      portico: 'Check the backend logs for crashes; on reused connections set `upstreams.<name>.keepalive.idle_timeout` below the backend\'s keep-alive timeout (e.g. "4s" for a 5s backend); `upstreams.<name>.retries.attempts` retries idempotent requests on reused connections.',
    },
  },
  {
    id: 'connection_limit_reached', type: 'connection_limit_reached', status: 503, phase: 'select_endpoint', source: 'internal', retry: 'never', retryAfterS: RETRY_AFTER_OVERLOAD_S,
    title: 'The upstream connection or queue limit was reached',
    hint: 'Raise the upstream\'s limits.max_connections or limits.max_pending, or add capacity: the upstream is saturated.',
    fix: {
      nginx: 'nginx ran out of connections or ports.',
      portico: 'Raise `upstreams.<name>.limits.max_connections` (and `upstreams.<name>.limits.max_pending`) or add endpoints: the backend is saturated.',
      nginxDetails: {
        ephemeral_ports_exhausted: '"(99: Cannot assign requested address)": ephemeral ports are exhausted by one connection per request; reuse connections with `keepalive 32;` in the `upstream` block plus `proxy_http_version 1.1; proxy_set_header Connection "";` in the `location` block.',
        open_files_limit: '"(24: Too many open files)": raise `worker_rlimit_nofile 65535;` in the main context (and LimitNOFILE for systemd) above 2 × worker_connections.',
        worker_connections: '"worker_connections are not enough": raise `worker_connections 4096;` in the `events` block (each proxied request uses two).',
      },
    },
  },
  {
    id: 'tls_protocol_error', type: 'tls_protocol_error', status: 502, phase: 'connect', source: 'upstream', retry: 'always', retryAfterS: null,
    title: 'The TLS handshake with the upstream failed',
    hint: 'Check that the endpoint scheme matches what the port speaks (https:// to a plain-HTTP port fails with "wrong version number").',
    fix: {
      nginx: 'The TLS handshake failed: "wrong version number" means an https:// proxy_pass to a plain-HTTP port (use http://); otherwise send the name and offer the versions the backend speaks with `proxy_ssl_server_name on; proxy_ssl_protocols TLSv1.2 TLSv1.3;` in the `location` block.',
      portico: 'Check the scheme of `upstreams.<name>.endpoints`: "https://" to a plain-HTTP port fails with "wrong version number".',
    },
  },
  {
    id: 'tls_certificate_error', type: 'tls_certificate_error', status: 502, phase: 'connect', source: 'upstream', retry: 'always', retryAfterS: null,
    title: 'The upstream certificate was not accepted',
    hint: 'Check the certificate expiry, the chain against the CA bundle and that it names the host.',
    fix: {
      nginx: 'Renew an expired certificate; make the chain verify and send the right name with `proxy_ssl_verify on; proxy_ssl_trusted_certificate /path/ca.pem; proxy_ssl_server_name on;` in the `location` block (and `proxy_ssl_name HOST;` in the `location` block when it differs).',
      portico: 'Renew an expired certificate, or make its chain verify against `upstreams.<name>.tls.ca` and name the endpoint host (or `upstreams.<name>.tls.servername`).',
    },
  },
  {
    id: 'http_response_timeout', type: 'http_response_timeout', status: 504, phase: 'await_response_header', source: 'upstream', retry: 'never', retryAfterS: null,
    title: 'The upstream did not send a response header in time',
    hint: 'The application is slow or stuck: compare its latency with the response_header timeout.',
    fix: {
      nginx: 'The backend did not answer within proxy_read_timeout: find the slow requests in its logs; only if they are expected, raise it above the slowest legitimate response with `proxy_read_timeout 120s;` in the `location` block (and `proxy_send_timeout 120s;` in the `location` block for slow request bodies).',
      portico: 'The backend did not send a header within `upstreams.<name>.timeouts.response_header`: find the slow requests in its logs, or raise that timeout if they are expected.',
    },
  },
  {
    id: 'http_protocol_error', type: 'http_protocol_error', status: 502, phase: 'await_response_header', source: 'upstream', retry: 'never', retryAfterS: null,
    title: 'The upstream answered with something that is not valid HTTP',
    hint: 'Check that the endpoint speaks plain HTTP/1.1 on that port (TLS bytes or another protocol were received).',
    fix: {
      nginx: 'The backend did not answer valid HTTP: check that it speaks plain HTTP on that port (an https:// proxy_pass for a TLS port) and the protocol version, `proxy_http_version 1.1;` in the `location` block.',
      portico: 'Check that the endpoint speaks plain HTTP/1.1 (use "https://" in `upstreams.<name>.endpoints` for a TLS port).',
    },
  },
  {
    id: 'http_response_header_section_size', type: 'http_response_header_section_size', status: 502, phase: 'await_response_header', source: 'upstream', retry: 'never', retryAfterS: null,
    title: 'The upstream response header section is too large',
    hint: 'Reduce the response headers (often cookies) or raise max_response_header_size.',
    fix: {
      nginx: 'Raise the header buffer, e.g. `proxy_buffer_size 16k; proxy_buffers 8 16k;` in the `location` block, or trim the response headers (often cookies).',
      portico: 'Raise `upstreams.<name>.max_response_header_size` or trim the response headers (often cookies).',
    },
  },
  {
    id: 'http_response_incomplete', type: 'http_response_incomplete', status: null, phase: 'stream_response', source: 'upstream', retry: 'never', retryAfterS: null,
    title: 'The upstream closed the connection in the middle of the response body',
    hint: 'Check the application logs for crashes or killed workers while writing the response.',
    fix: {
      nginx: 'The backend closed the connection mid-body: check its logs for crashes, killed workers or memory limits while writing responses.',
      portico: 'The backend closed mid-body: check its logs for crashes or killed workers while writing responses.',
    },
  },
  {
    id: 'connection_read_timeout', type: 'connection_read_timeout', status: null, phase: 'stream_response', source: 'upstream', retry: 'never', retryAfterS: null,
    title: 'The upstream stopped sending the response body',
    hint: 'The body stalled longer than the idle timeout: check the application or raise timeouts.idle.',
    fix: {
      nginx: 'The body stalled longer than proxy_read_timeout (the time between two reads): check why the backend stops streaming, or raise it for streaming locations with `proxy_read_timeout 300s;` in the `location` block.',
      portico: 'The body stalled longer than `upstreams.<name>.timeouts.idle`: check why the backend stops streaming, or raise that timeout.',
    },
  },
  {
    id: 'http_upgrade_failed', type: 'http_upgrade_failed', status: 502, phase: 'await_response_header', source: 'upstream', retry: 'never', retryAfterS: null,
    title: 'The protocol upgrade (WebSocket) could not be completed',
    hint: 'Check that the upstream accepts the upgrade on this path.',
    fix: {
      nginx: 'For WebSocket, pass the upgrade on: `proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";` in the `location` block.',
      portico: 'Check that the upstream accepts the upgrade on this path: it answered something other than 101 Switching Protocols.',
    },
  },
  {
    id: 'http_request_error.client_body_timeout', type: 'http_request_error', status: 408, phase: 'send_request', source: 'downstream', retry: 'never', retryAfterS: null,
    title: 'The client did not send its request body in time',
    hint: 'The client went silent while sending its request body for longer than listeners[].timeouts.body_idle: check the client and its network.',
    fix: {
      nginx: 'Clients went silent while sending request bodies: check them; the silence allowed between two reads of a body is `client_body_timeout 60s;` in the `server` block (nginx answers 408).',
      portico: 'Check the clients and their network; the silence allowed between two reads of a request body is `listeners[].timeouts.body_idle`.',
    },
  },
  {
    id: 'http_request_error.path_bad_encoding', type: 'http_request_error', status: 400, phase: 'validate_request', source: 'downstream', retry: 'never', retryAfterS: null,
    title: 'The request path has a malformed or forbidden percent-encoding',
    hint: 'Encode the path as RFC 3986 §2.1 says: "%" followed by two hex digits, never %00, and UTF-8 in its shortest form (no %C0%AE).',
    fix: {
      nginx: 'nginx answers such a path with 400 itself: check what the client sends.',
      portico: 'Check what the client sends: the access log details name the refusal and the path.',
    },
  },
  {
    id: 'http_request_error.path_encoded_slash', type: 'http_request_error', status: 400, phase: 'validate_request', source: 'downstream', retry: 'never', retryAfterS: null,
    title: 'The request path contains an encoded slash (%2F)',
    hint: 'Send "/" unencoded, or set listeners[].encoded_slashes to keep when the application needs %2F.',
    fix: {
      nginx: 'nginx decodes %2F before it matches locations; a proxy_pass without a URI passes the path on as received. Check what the client sends.',
      portico: 'Set `listeners[].encoded_slashes` to keep when the application needs %2F in paths; else check what the client sends.',
    },
  },
  {
    id: 'http_request_error.path_above_root', type: 'http_request_error', status: 400, phase: 'validate_request', source: 'downstream', retry: 'never', retryAfterS: null,
    title: 'The request path climbs above the root with dot-segments',
    hint: 'Send the path without ".." segments that go above "/".',
    fix: {
      nginx: 'nginx answers a path that climbs above the root with 400 itself: check what the client sends (often a path-traversal probe).',
      portico: 'Check what the client sends (often a path-traversal probe); nothing was forwarded.',
    },
  },
  {
    id: 'http_request_error.path_ambiguous_dot_segment', type: 'http_request_error', status: 400, phase: 'validate_request', source: 'downstream', retry: 'never', retryAfterS: null,
    title: 'A request path segment is a dot-segment once split at ";", "%2F" or a backslash, or decoded again',
    hint: 'Send the path without "..;", "..%2F", "..\\" or double-encoded ("%252e") segments.',
    fix: {
      nginx: 'Check what the client sends (often a path-traversal probe): an application behind nginx may resolve such a segment where nginx did not.',
      portico: 'Check what the client sends (often a path-traversal probe); nothing was forwarded.',
    },
  },
  {
    id: 'http_request_error.target_form', type: 'http_request_error', status: 400, phase: 'validate_request', source: 'downstream', retry: 'never', retryAfterS: null,
    title: 'The request target is not a path (absolute-form is for forward proxies)',
    hint: 'Send the path and query only, with the host in Host (RFC 9112 §3.2.1).',
    fix: {
      nginx: 'nginx accepts absolute-form targets and takes their host: a client sending them may be set up to use a forward proxy; check its proxy settings.',
      portico: 'Check the client\'s proxy settings: it speaks to Portico as to a forward proxy.',
    },
  },
  {
    id: 'http_request_error.duplicate_host', type: 'http_request_error', status: 400, phase: 'validate_request', source: 'downstream', retry: 'never', retryAfterS: null,
    title: 'The request has more than one Host header field',
    hint: 'Send exactly one Host field (RFC 9112 §3.2).',
    fix: {
      nginx: 'nginx answers two Host fields with 400 itself ("client sent duplicate host header"): check what the client sends.',
      portico: 'Check what the client (or a proxy in front of Portico) sends: two Host fields.',
    },
  },
  {
    id: 'http_request_error.invalid_host', type: 'http_request_error', status: 400, phase: 'validate_request', source: 'downstream', retry: 'never', retryAfterS: null,
    title: 'The request has no valid Host',
    hint: 'Send one Host field holding host[:port] (RFC 9112 §3.2); over HTTP/2 a host field must name the :authority (RFC 9113 §8.3.1).',
    fix: {
      nginx: 'nginx answers a missing or invalid Host with 400 itself ("client sent invalid host header"): check what the client sends.',
      portico: 'Check what the client (or a proxy in front of Portico) sends as Host, or as host and :authority over HTTP/2.',
    },
  },
  {
    id: 'http_request_error.http_version_not_supported', type: 'http_request_error', status: 505, phase: 'validate_request', source: 'downstream', retry: 'never', retryAfterS: null,
    title: 'The request line names an HTTP version this listener does not speak',
    hint: 'Send HTTP/1.1 or HTTP/1.0 on this listener; HTTP/2 is offered over TLS by ALPN.',
    fix: {
      nginx: 'nginx answers such a request line with 505 itself: check the client; HTTP/2 is offered on TLS listeners.',
      portico: 'Check the client; HTTP/2 is offered by ALPN on listeners with `listeners[].tls`.',
    },
  },
  {
    id: 'http_request_error.transfer_coding_not_implemented', type: 'http_request_error', status: 501, phase: 'validate_request', source: 'downstream', retry: 'never', retryAfterS: null,
    title: 'The request uses a transfer coding other than chunked',
    hint: 'Send the body with Content-Length or with Transfer-Encoding: chunked alone (RFC 9112 §6.1).',
    fix: {
      nginx: 'nginx answers a transfer coding other than chunked with 501 itself: check what the client sends.',
      portico: 'Check what the client sends: Transfer-Encoding other than chunked alone.',
    },
  },
  {
    id: 'http_request_error.invalid_method', type: 'http_request_error', status: 400, phase: 'validate_request', source: 'downstream', retry: 'never', retryAfterS: null,
    title: 'The request method is not an upper-case token',
    hint: 'Send the method in upper case (GET, not get): methods are case-sensitive (RFC 9110 §9.1).',
    fix: {
      nginx: 'nginx answers a method with lower-case letters with 400 itself ("client sent invalid method"): check what the client sends.',
      portico: 'Check what the client sends: over HTTP/2 a method such as trace or get is refused, so `listeners[].deny_methods` cannot be bypassed by writing a method in lower case.',
    },
  },
  {
    id: 'http_request_error.malformed_request', type: 'http_request_error', status: 400, phase: 'parse', source: 'downstream', retry: 'never', retryAfterS: null,
    title: 'The request is not valid HTTP/1.1',
    hint: 'Fix the client: the request line or a header field broke the HTTP/1.1 grammar (RFC 9112), e.g. a bad method, a space in the target, or conflicting framing.',
    fix: {
      nginx: 'nginx answers such a request with 400 itself: check what the client sends; the reason is logged with `error_log /var/log/nginx/error.log info;` in the `server` block.',
      portico: 'Check what the client sends: the access log details have the parser\'s code and what was received of the request line.',
    },
  },
  {
    id: 'http_request_error.uri_too_long', type: 'http_request_error', status: 414, phase: 'parse', source: 'downstream', retry: 'never', retryAfterS: null,
    title: 'The request target is longer than the listener accepts',
    hint: 'Send a shorter path and query (move data into a POST body), or raise listeners[].max_header_size, which bounds the request line too.',
    fix: {
      nginx: 'nginx answers 414 itself when the request line does not fit its buffers: raise them with `large_client_header_buffers 4 32k;` in the `server` block, or shorten the URLs the client builds.',
      portico: 'Raise `listeners[].max_header_size` (it bounds the request line with the fields), or shorten the URLs the client builds.',
    },
  },
  {
    id: 'http_request_error.request_header_too_large', type: 'http_request_error', status: 431, phase: 'parse', source: 'downstream', retry: 'never', retryAfterS: null,
    title: 'The request header section is larger than the listener accepts',
    hint: 'Send fewer or smaller header fields (often cookies), or raise listeners[].max_header_size.',
    fix: {
      nginx: 'Raise the header buffers, e.g. `large_client_header_buffers 4 32k;` in the `server` block (nginx answers 400 "Request Header Or Cookie Too Large"), or trim the request headers (often cookies).',
      portico: 'Raise `listeners[].max_header_size` or trim the request headers (often cookies).',
    },
  },
  {
    id: 'http_request_error.request_header_timeout', type: 'http_request_error', status: 408, phase: 'parse', source: 'downstream', retry: 'never', retryAfterS: null,
    title: 'The client did not send its request header in time',
    hint: 'The client sent part of a request header and went silent for longer than listeners[].timeouts.header_read (a slow client, or slowloris).',
    fix: {
      nginx: 'A client started a request and went silent (a slow client, or slowloris); the wait is `client_header_timeout 10s;` in the `server` block.',
      portico: 'A client started a request and went silent (a slow client, or slowloris); the wait is `listeners[].timeouts.header_read`.',
    },
  },
  {
    id: 'http_request_denied.method_not_allowed', type: 'http_request_denied', status: 405, phase: 'validate_request', source: 'downstream', retry: 'never', retryAfterS: null,
    title: 'The request method is denied on this listener',
    hint: 'The method is in listeners[].deny_methods (TRACE by default); CONNECT is never proxied.',
    fix: {
      nginx: 'nginx refuses TRACE with 405 itself; to deny other methods, list the allowed ones with limit_except in the location.',
      portico: 'The method is in `listeners[].deny_methods` (TRACE by default); CONNECT is never proxied.',
    },
  },
  {
    id: 'http_request_denied.body_too_large', type: 'http_request_denied', status: 413, phase: 'send_request', source: 'downstream', retry: 'never', retryAfterS: null,
    title: 'The request body is larger than this listener accepts',
    hint: 'Send a smaller body, or raise the listener\'s max_request_body_size.',
    fix: {
      nginx: 'Raise the limit where large bodies are expected, e.g. `client_max_body_size 50m;` in the `location` block.',
      portico: 'Raise `listeners[].max_request_body_size` where large bodies are expected.',
    },
  },
  {
    id: 'http_request_denied.access_rule', type: 'http_request_denied', status: 403, phase: 'route', source: 'downstream', retry: 'never', retryAfterS: null,
    title: 'An access rule denied the request',
    hint: 'The client address, method or path is denied by an access rule of the listener or the route (listeners[].access, routes[].access).',
    fix: {
      nginx: 'Check the access rules, e.g. `allow 10.0.0.0/8; deny all;` in the `location` block.',
      portico: 'Check the first rule that matches in `routes[].access` and `listeners[].access` (the log\'s details name it), and `trusted_proxies` when clients come through a proxy.',
    },
  },
  {
    id: 'http_request_denied.rate_limited', type: 'http_request_denied', status: 429, phase: 'route', source: 'downstream', retry: 'never', retryAfterS: null,
    title: 'A rate limit refused the request',
    hint: 'Send fewer requests: wait as Retry-After says. The limits are the route\'s rate_limits and limit_conn.',
    fix: {
      nginx: 'Check the limit, `limit_req zone=ZONE burst=20 nodelay;` in the `location` block, against the rate of `limit_req_zone $binary_remote_addr zone=ZONE:10m rate=10r/s;` in the `http` block; nginx answers 503 unless `limit_req_status 429;` in the `http` block.',
      portico: 'Check `routes[].rate_limits` (rate, burst, key) and `routes[].limit_conn.max` against the traffic the log\'s details name.',
    },
  },
  {
    id: 'http_request_denied.client_request_limit', type: 'http_request_denied', status: 429, phase: 'accept', source: 'downstream', retry: 'never', retryAfterS: 1,
    title: 'The client address has too many requests in progress',
    hint: 'Send fewer requests at once from this address, or raise limits.max_requests_per_client_ip (behind a load balancer every client shares its address: leave the cap off there).',
    fix: {
      nginx: 'Check the cap, `limit_conn ZONE 10;` in the `location` block, with `limit_conn_zone $binary_remote_addr zone=ZONE:10m;` in the `http` block; nginx answers 503 unless `limit_conn_status 429;` in the `http` block.',
      portico: 'Raise `limits.max_requests_per_client_ip`, or leave it out when clients share an address (a load balancer, a NAT).',
    },
  },
  {
    id: 'proxy_configuration_error', type: 'proxy_configuration_error', status: 500, phase: 'route', source: 'internal', retry: 'never', retryAfterS: null,
    title: 'The proxy configuration cannot serve this request',
    hint: 'Run `portico check -c FILE` and fix the reported problems.',
    fix: {
      nginx: 'Run `nginx -t` and `portico doctor --nginx-config FILE`.',
      portico: 'Run `portico check -c FILE` and fix the reported problems.',
    },
  },
  {
    id: 'proxy_internal_error', type: 'proxy_internal_error', status: 500, phase: null, source: 'internal', retry: 'never', retryAfterS: null,
    title: 'The proxy failed while handling this request',
    hint: 'This is a Portico bug: report it with the request ID and the access log line.',
    fix: {
      nginx: 'Check the nginx error.log around these lines for [crit] and [alert] messages.',
      portico: 'This is a Portico bug: report it with the request ID and the access log line.',
    },
  },
]

function freezeRow(r: Cause): Cause {
  Object.freeze(r.fix.nginxDetails)
  Object.freeze(r.fix)
  return Object.freeze(r)
}

/** The cause table, keyed by {@link CauseId}. Frozen. */
export const CAUSES: Readonly<Record<CauseId, Cause>> = Object.freeze(
  Object.fromEntries(rows.map((r) => [r.id, freezeRow(r)])) as Record<CauseId, Cause>,
)

/** Every row name, in table order. */
export const CAUSE_IDS: readonly CauseId[] = Object.freeze(rows.map((r) => r.id))

/** Every RFC 9209 type of the table, once each, in table order. */
export const CAUSE_TYPES: readonly CauseType[] = Object.freeze([...new Set(rows.map((r) => r.type))])

/** The rows of each RFC 9209 type, in table order (one for most types; the variants for a {@link VariedCauseType}). */
const BY_TYPE: Readonly<Record<CauseType, readonly Cause[]>> = (() => {
  const out = {} as Record<CauseType, Cause[]>
  for (const id of CAUSE_IDS) (out[CAUSES[id].type] ??= []).push(CAUSES[id])
  return out
})()

/**
 * The row for an RFC 9209 type as it appears where only the type is known (an access log
 * line, a Proxy-Status): the variant answering with `status` when the type has variants
 * and one matches, else the type's first row.
 *
 * @param type the RFC 9209 type
 * @param status the status sent downstream, when known
 */
export function causeOf(type: CauseType, status?: number | null): Cause {
  const list = BY_TYPE[type]
  if (list.length > 1 && status != null) {
    for (const c of list) if (c.status === status) return c
  }
  return list[0]
}

/**
 * Whether a failure of this RFC 9209 type is the endpoint's ({@link Cause.source} `upstream`):
 * reported to outlier detection and kept as its last error.
 */
export function isUpstreamFailure(type: CauseType): boolean {
  return BY_TYPE[type][0].source === 'upstream'
}

/**
 * Whether a failure of this cause may, by its nature, be tried again for a request with
 * this method ({@link Cause.retry}): causes before anything was sent always;
 * `connection_terminated` (the upstream reset or closed before a response header) for
 * idempotent methods only (RFC 9110 §9.2.2); the others never. `retries.on` decides which
 * of these are retried.
 *
 * @param type the failure's cause
 * @param idempotent whether the request method is idempotent (RFC 9110 §9.2.2)
 */
export function isRetryable(type: CauseType, idempotent: boolean): boolean {
  const retry = BY_TYPE[type][0].retry
  return retry === 'always' || (retry === 'idempotent' && idempotent)
}

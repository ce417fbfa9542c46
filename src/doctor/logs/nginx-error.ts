/**
 * Reader of nginx error.log lines: each upstream failure message mapped to its RFC 9209
 * cause, with the upstream, client, request, server and time taken out of the line.
 */
import type { CauseType } from '../../failures/causes.ts'
import type { LogEvent } from './event.ts'

/** One known nginx message: what it means as a cause, and what nginx answered. */
export interface NginxErrorRule {
  /** Matched against the message (the text before `, client: `). */
  re: RegExp
  /** null for a line that is not itself a failed request (e.g. the resolver's own socket errors: the request fails later with `could not be resolved`). */
  cause: CauseType | null
  /** Short machine detail, e.g. `refused`, `closed_mid_body`. */
  detail: string
  /** Status nginx sends for it; null when the response had already started or no request was involved. */
  status: number | null
}

/**
 * nginx upstream messages, most specific first (the first match wins). Sources: the
 * messages of ngx_http_upstream.c, ngx_http_proxy_module.c, ngx_event_connect.c,
 * ngx_resolver.c and ngx_event_openssl.c; nginx answers 504 for timeouts and 502 for the
 * rest ("while reading upstream" happens after the status was sent).
 */
export const NGINX_ERROR_RULES: readonly NginxErrorRule[] = [
  // The resolver's own I/O (`send() failed (111: Connection refused) while resolving, resolver: ...`): not an upstream
  // connection; the request behind it fails with `could not be resolved`, counted once there.
  { re: /while resolving\b/, cause: null, detail: 'resolver_io', status: null },
  { re: /could not be resolved \(110: Operation timed out\)|resolver timed out|could not be resolved \(\d+: [^)]*timed out\)/i, cause: 'dns_timeout', detail: 'resolver_timeout', status: 502 },
  { re: /could not be resolved/, cause: 'dns_error', detail: 'not_resolved', status: 502 },
  { re: /host not found in upstream/, cause: 'dns_error', detail: 'not_resolved_at_start', status: null },
  { re: /no resolver defined to resolve/, cause: 'dns_error', detail: 'no_resolver', status: 502 },
  { re: /\(99: Cannot assign requested address\)/, cause: 'connection_limit_reached', detail: 'ephemeral_ports_exhausted', status: 502 },
  { re: /\(24: Too many open files\)/, cause: 'connection_limit_reached', detail: 'open_files_limit', status: null },
  { re: /worker_connections are not enough/, cause: 'connection_limit_reached', detail: 'worker_connections', status: null },
  { re: /\((?:113: No route to host|101: Network is unreachable)\)/, cause: 'destination_ip_unroutable', detail: 'no_route', status: 502 },
  { re: /connect\(\) to unix:\S+ failed \(2: No such file or directory\)/, cause: 'connection_refused', detail: 'unix_missing', status: 502 },
  { re: /connect\(\) to unix:\S+ failed \(13: Permission denied\)/, cause: 'connection_refused', detail: 'unix_forbidden', status: 502 },
  { re: /connect\(\) to unix:\S+ failed \(11: Resource temporarily unavailable\)/, cause: 'connection_timeout', detail: 'unix_backlog_full', status: 502 },
  { re: /\(111: Connection refused\)/, cause: 'connection_refused', detail: 'refused', status: 502 },
  { re: /no live upstreams/, cause: 'destination_unavailable', detail: 'no_live_upstreams', status: 502 },
  { re: /upstream SSL certificate verify error/, cause: 'tls_certificate_error', detail: 'certificate_verify', status: 502 },
  { re: /upstream SSL certificate does not match/, cause: 'tls_certificate_error', detail: 'certificate_name', status: 502 },
  { re: /SSL_do_handshake\(\) failed|peer closed connection in SSL handshake/, cause: 'tls_protocol_error', detail: 'handshake', status: 502 },
  { re: /upstream sent unsupported FastCGI protocol version|upstream sent invalid FastCGI record type|upstream sent (?:invalid|unexpected) (?:uwsgi|scgi)|upstream sent (?:invalid )?http2|upstream sent frame for (?:closed|unknown) stream|upstream sent invalid (?:frame|preface)/, cause: 'http_protocol_error', detail: 'wrong_protocol', status: 502 },
  { re: /upstream prematurely closed FastCGI stdout while reading response header/, cause: 'connection_terminated', detail: 'closed_before_header', status: 502 },
  { re: /upstream sent too big header/, cause: 'http_response_header_section_size', detail: 'header_too_big', status: 502 },
  { re: /upstream sent (?:invalid|no valid|unexpected|more data|duplicate)[^,]* while reading upstream/, cause: 'http_response_incomplete', detail: 'invalid_body', status: null },
  { re: /upstream sent (?:invalid header|no valid HTTP\/1\.0 header|invalid status|duplicate header|unexpected|invalid chunked)/, cause: 'http_protocol_error', detail: 'invalid_response', status: 502 },
  { re: /upstream timed out \([^)]*\) while connecting to upstream|connect\(\) (?:to \S+ )?failed \(110: Connection timed out\)/, cause: 'connection_timeout', detail: 'connect_timeout', status: 504 },
  { re: /upstream timed out \([^)]*\) while reading response header from upstream/, cause: 'http_response_timeout', detail: 'header_timeout', status: 504 },
  { re: /upstream timed out \([^)]*\) while sending request to upstream/, cause: 'http_response_timeout', detail: 'send_timeout', status: 504 },
  { re: /upstream timed out \([^)]*\) while reading upstream/, cause: 'connection_read_timeout', detail: 'body_timeout', status: null },
  { re: /upstream prematurely closed connection while reading response header/, cause: 'connection_terminated', detail: 'closed_before_header', status: 502 },
  { re: /upstream prematurely closed connection while reading upstream/, cause: 'http_response_incomplete', detail: 'closed_mid_body', status: null },
  { re: /\((?:104: Connection reset by peer|32: Broken pipe)\) while (?:reading response header from upstream|sending request to upstream|connecting to upstream)/, cause: 'connection_terminated', detail: 'reset_before_header', status: 502 },
  { re: /\((?:104: Connection reset by peer|32: Broken pipe)\) while reading upstream/, cause: 'http_response_incomplete', detail: 'reset_mid_body', status: null },
  { re: /upstream timed out/, cause: 'http_response_timeout', detail: 'timeout', status: 504 },
]

// `2026/11/20 10:15:32 [error] 1234#1234: *567 message, client: ..., server: ..., ...`
const LINE_RE = /^(\d{4})\/(\d{2})\/(\d{2}) (\d{2}):(\d{2}):(\d{2}) \[(\w+)\] (\d+)#(\d+): (?:\*(\d+) )?(.*)$/
// The context nginx appends (ngx_http_log_error): client and server unquoted, the rest quoted.
const CONTEXT_RE = /, (client|server|request|subrequest|upstream|host|referrer): ("(?:[^"\\]|\\.)*"|[^,]*)/g

/** Whether the line has the nginx error.log prefix (`YYYY/MM/DD HH:MM:SS [level] pid#tid:`). */
export function isNginxErrorLine(raw: string): boolean {
  return LINE_RE.test(raw)
}

/** `http://10.0.0.1:8080/path` → `10.0.0.1:8080`; `http://backend/` → `backend`. */
function authority(url: string): string {
  const m = /^[a-z]+:\/\/(\[[^\]]*\](?::\d+)?|[^/]+)/i.exec(url)
  return m ? m[1] : url
}

/**
 * Parses one nginx error.log line. Lines that are not about an upstream still yield an
 * event, with `cause: null`. The time has no zone in nginx's format and is read as local
 * time of the machine running doctor.
 *
 * `endpoint` is the peer `host:port` from `upstream: "..."` (or from `connect() to
 * host:port failed`, or the name that could not be resolved); when the upstream field
 * names an upstream block with no port (`no live upstreams`), it goes to `upstream`.
 *
 * @param raw the line
 * @param line 1-based line number
 * @returns the event, or null when the line is not in nginx's error.log format
 */
export function parseNginxErrorLine(raw: string, line: number): LogEvent | null {
  const m = LINE_RE.exec(raw)
  if (!m) return null
  const ts = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]))
  const rest = m[11]
  const ctxAt = rest.search(/, (client|server|request|upstream|host): /)
  const message = ctxAt >= 0 ? rest.slice(0, ctxAt) : rest
  const ctx = new Map<string, string>()
  if (ctxAt >= 0) {
    for (const c of rest.slice(ctxAt).matchAll(CONTEXT_RE)) ctx.set(c[1], c[2].startsWith('"') ? c[2].slice(1, -1).replace(/\\(.)/g, '$1') : c[2])
  }
  const rule = NGINX_ERROR_RULES.find((r) => r.re.test(message)) ?? null
  let endpoint: string | null = null
  let upstream: string | null = null
  const up = ctx.get('upstream')
  const unixUp = up ? /^[a-z]+:\/\/unix:([^:]+)/i.exec(up) : null
  if (unixUp) endpoint = `unix:${unixUp[1]}`
  else if (up) {
    const a = authority(up)
    if (/:\d+$/.test(a) || a.startsWith('unix:')) endpoint = a
    else upstream = a
  }
  const connectTo = /connect\(\) to (\S+) failed/.exec(message)
  if (!endpoint && connectTo) endpoint = connectTo[1]
  const unresolved = /^(\S+) could not be resolved/.exec(message) ?? /host not found in upstream "([^"]+)"/.exec(message)
  if (!endpoint && unresolved) endpoint = unresolved[1]
  const protocol = up ? /^(fastcgi|uwsgi|scgi|grpcs?|suwsgi|https?):\/\//i.exec(up)?.[1].toLowerCase() ?? null : null
  return {
    ts, source: 'nginx-error', ...(protocol ? { protocol: protocol.replace(/s$/, '').replace('suwsgi', 'uwsgi').replace('http', 'http') } : {}), cause: rule?.cause ?? null, status: rule?.status ?? null,
    upstream, endpoint, requestId: null, line, raw,
    detail: rule?.detail ?? null, client: ctx.get('client') ?? null, request: ctx.get('request') ?? null,
    server: ctx.get('server') ?? null, host: ctx.get('host') ?? null, level: m[7], message,
  }
}

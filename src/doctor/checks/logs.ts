/**
 * Findings from a log summary: one per cause seen, with counts, endpoints, bursts and
 * sample lines as evidence, and the fix in the vocabulary of the system that wrote the log.
 */
import { CAUSES } from '../../failures/causes.ts'
import type { CauseType } from '../../failures/causes.ts'
import type { Finding, Severity } from '../finding.ts'
import type { CauseKey, CauseSummary, LogSummary } from '../logs/summary.ts'
import type { Correlation } from '../logs/correlate.ts'

/** Options of {@link checkLogs}. */
export interface LogCheckOptions {
  /** Which system wrote the log: decides the vocabulary of the fixes. */
  system: 'portico' | 'nginx'
  /** Result of correlate(), to say per cause whether the backend saw the failed requests. */
  correlation?: Correlation
}

/** Fix text per cause for nginx; per-detail additions below. */
const NGINX_FIX: Record<CauseType, string> = {
  dns_error: 'Check that the name resolves from the nginx host (`dig NAME`). To follow a backend that moves, set `resolver <DNS IP> valid=30s;` and proxy through a variable (`set $backend NAME:PORT; proxy_pass http://$backend;`), or add `resolve` to the upstream `server` (with `zone`).',
  dns_timeout: 'The resolver did not answer: check that the `resolver` address is reachable, list a second one, and set `resolver_timeout 5s;`.',
  destination_not_found: 'Check the `server_name` and `location` blocks.',
  destination_unavailable: 'Every server of the upstream was marked failed (`max_fails`/`fail_timeout`): fix the backends first; consider `max_fails=3 fail_timeout=10s` and a `backup` server.',
  destination_ip_unroutable: 'No route from the nginx host to the backend: check routing, security groups and firewalls; nginx settings cannot fix this.',
  connection_refused: 'Nothing listens on that address: start the backend or correct the port in `server`/`proxy_pass`; `proxy_next_upstream error timeout;` lets another server take the request.',
  connection_timeout: 'The TCP connect did not complete: check firewalls dropping SYNs, that the backend host is up and its listen backlog; keep `proxy_connect_timeout 5s;` short so `proxy_next_upstream error timeout;` can move on.',
  connection_terminated: 'The backend closed or reset before answering: check its logs for crashes. On reused connections this is the keep-alive race: set the upstream `keepalive_timeout` below the backend\'s keep-alive timeout (e.g. `keepalive_timeout 4s;` for a 5s backend); `proxy_next_upstream error timeout;` retries idempotent requests.',
  connection_limit_reached: 'nginx ran out of connections or ports.',
  tls_protocol_error: 'The TLS handshake failed: "wrong version number" means `proxy_pass https://` to a plain-HTTP port (use `http://`); otherwise set `proxy_ssl_server_name on;` and check `proxy_ssl_protocols`.',
  tls_certificate_error: 'Renew an expired certificate; make the chain verify with `proxy_ssl_verify on; proxy_ssl_trusted_certificate /path/ca.pem;` and send the right name with `proxy_ssl_server_name on;` (and `proxy_ssl_name HOST;` when it differs).',
  http_response_timeout: 'The backend did not answer within `proxy_read_timeout`: find the slow requests in its logs; raise `proxy_read_timeout` above the slowest legitimate response only if it is expected (and `proxy_send_timeout` for slow request bodies).',
  http_protocol_error: 'The backend did not answer valid HTTP: check that it speaks plain HTTP on that port (`proxy_pass https://` for a TLS port) and the `proxy_http_version`.',
  http_response_header_section_size: 'Raise the header buffer, e.g. `proxy_buffer_size 16k; proxy_buffers 8 16k;`, or trim the response headers (often cookies).',
  http_response_incomplete: 'The backend closed the connection mid-body: check its logs for crashes, killed workers or memory limits while writing responses.',
  connection_read_timeout: 'The body stalled longer than `proxy_read_timeout` (the time between two reads): check why the backend stops streaming, or raise `proxy_read_timeout` for streaming locations.',
  http_upgrade_failed: 'For WebSocket: `proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";`.',
  http_request_error: 'Clients went silent while sending request bodies: check them; `client_body_timeout` bounds the silence (nginx answers 408).',
  http_request_denied: 'Check `limit_req`, `limit_conn`, `allow`/`deny` rules.',
  proxy_configuration_error: 'Run `nginx -t` and `portico doctor --nginx-config FILE`.',
  proxy_internal_error: 'Check the nginx error.log around these lines for [crit] and [alert] messages.',
}

/** Extra fix text for nginx details that share a cause. */
const NGINX_DETAIL_FIX: Record<string, string> = {
  ephemeral_ports_exhausted: '"(99: Cannot assign requested address)": ephemeral ports are exhausted by one connection per request; reuse connections with `keepalive 32;` in the upstream block plus `proxy_http_version 1.1;` and `proxy_set_header Connection "";` in the location.',
  open_files_limit: '"(24: Too many open files)": raise `worker_rlimit_nofile` (and LimitNOFILE for systemd) above 2 × `worker_connections`.',
  worker_connections: '"worker_connections are not enough": raise `worker_connections` in the events block (each proxied request uses two).',
  no_resolver: '"no resolver defined": add `resolver <DNS IP> valid=30s;` where proxy_pass uses a variable.',
  not_resolved_at_start: '"host not found in upstream" at start: nginx refuses to start or reload until the name resolves.',
}

/** The Portico key to change, with the upstream name filled in when the log names one. */
function porticoFix(cause: CauseType, up: string): string {
  const u = `upstreams.${up}`
  switch (cause) {
    case 'dns_error': return `Check that the host names in \`${u}.endpoints\` resolve from the Portico host (\`dig NAME\`).`
    case 'dns_timeout': return `Check that the DNS servers of \`${u}.dns.resolvers\` (when unset, those of /etc/resolv.conf) are reachable and answering.`
    case 'destination_unavailable': return `Every endpoint of \`${u}\` is marked down: fix the endpoints, and check \`${u}.health_check\` (path, interval, timeout).`
    case 'destination_ip_unroutable': return 'No route from the Portico host to the endpoint: check routing and firewalls.'
    case 'connection_refused': return `Nothing listens on that endpoint: start the backend or correct the port in \`${u}.endpoints\`; \`${u}.retries.attempts\` lets another endpoint take the request.`
    case 'connection_timeout': return `The TCP connect did not complete: check the backend's listen backlog (full when it accepts too slowly: \`ss -lnt\` shows Recv-Q at Send-Q; raise the application's backlog and \`net.core.somaxconn\`), firewalls dropping SYNs and that the host is up; keep \`${u}.timeouts.connect\` short (e.g. "2s") so \`${u}.retries.attempts\` can move on.`
    case 'connection_terminated': return `Check the backend logs for crashes; on reused connections set \`${u}.keepalive.idle_timeout\` below the backend's keep-alive timeout (e.g. "4s" for a 5s backend); \`${u}.retries.attempts\` retries idempotent requests on reused connections.`
    case 'connection_limit_reached': return `Raise \`${u}.limits.max_connections\` or add endpoints: the backend is saturated.`
    case 'tls_protocol_error': return `Check the scheme of \`${u}.endpoints\`: "https://" to a plain-HTTP port fails with "wrong version number".`
    case 'tls_certificate_error': return 'Renew an expired certificate, or make its chain verify against the CA bundle and name the endpoint host.'
    case 'http_response_timeout': return `The backend did not send a header within \`${u}.timeouts.response_header\`: find the slow requests in its logs, or raise that timeout if they are expected.`
    case 'http_protocol_error': return `Check that the endpoint speaks plain HTTP/1.1 (use "https://" in \`${u}.endpoints\` for a TLS port).`
    case 'http_response_header_section_size': return `Raise \`${u}.max_response_header_size\` or trim the response headers (often cookies).`
    case 'http_response_incomplete': return 'The backend closed mid-body: check its logs for crashes or killed workers while writing responses.'
    case 'connection_read_timeout': return `The body stalled longer than \`${u}.timeouts.idle\`: check why the backend stops streaming, or raise that timeout.`
    default: return CAUSES[cause].hint
  }
}

function top(rec: Record<string, number>, n = 5): string {
  return Object.entries(rec).filter(([k]) => k !== '-').sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => `${k} (${v})`).join(', ')
}

function severityOf(cause: CauseKey): Severity {
  if (cause === 'unclassified') return 'warning'
  return CAUSES[cause].status === null ? 'warning' : 'error'
}

function fixFor(c: CauseSummary, system: LogCheckOptions['system']): string {
  if (c.cause === 'unclassified') {
    return system === 'nginx'
      ? 'The access log shows the status but not why: read the nginx error.log for the same minutes (`portico doctor --log /var/log/nginx/error.log`), or log `$upstream_status $upstream_addr $upstream_response_time` in the access log format.'
      : 'These failures carry no cause: check the upstream application logs for the same minutes.'
  }
  if (system === 'portico') {
    const ups = Object.keys(c.byUpstream).filter((k) => k !== '-')
    return porticoFix(c.cause, ups.length === 1 ? ups[0] : '<name>')
  }
  const details = Object.keys(c.byDetail).map((d) => NGINX_DETAIL_FIX[d]).filter((d): d is string => !!d)
  return [NGINX_FIX[c.cause], ...details].join(' ')
}

function span(c: CauseSummary): string {
  return c.firstSeen.getTime() === c.lastSeen.getTime() ? `at ${c.firstSeen.toISOString()}` : `from ${c.firstSeen.toISOString()} to ${c.lastSeen.toISOString()}`
}

/**
 * One finding per cause seen in a log summary, most frequent first, with id
 * `logs.<cause>` (`logs.unclassified` for 502/503/504 an access log does not explain).
 * Likelihood is the cause's share of the gateway errors. Evidence: counts and share,
 * first/last seen, endpoints, upstreams and statuses, the burst minute when the cause's
 * busiest minute is a burst, the backend correlation when given, and up to 3 sample lines
 * (`path:line: text`). The fix names nginx directives (`proxy_read_timeout`,
 * `proxy_connect_timeout`, `proxy_buffer_size`, `keepalive`, `resolver`, `proxy_ssl_*`,
 * `proxy_next_upstream`) or Portico keys (`upstreams.<name>.timeouts.*`, `.keepalive.idle_timeout`,
 * `.max_response_header_size`, `.retries.attempts`).
 *
 * @param summary from readLog
 * @param opts.system the system that wrote the log
 * @param opts.correlation from correlate(), optional
 * @returns findings; empty when the log has no gateway errors
 */
export function checkLogs(summary: LogSummary, opts: LogCheckOptions): Finding[] {
  const bursts = new Map(summary.bursts.map((b) => [b.minute, b]))
  return summary.causes.map((c): Finding => {
    const share = summary.failures > 0 ? c.count / summary.failures : 0
    const title = c.cause === 'unclassified'
      ? `${c.count} gateway error${c.count === 1 ? '' : 's'} (${top(c.byStatus)}) that the log does not explain`
      : `${CAUSES[c.cause].title}: ${c.count} time${c.count === 1 ? '' : 's'} in ${summary.path}`
    const evidence = [`${c.count} of ${summary.failures} gateway errors (${Math.round(share * 100)}%) ${span(c)}`]
    const endpoints = top(c.byEndpoint)
    if (endpoints) evidence.push(`endpoints: ${endpoints}`)
    const upstreams = top(c.byUpstream)
    if (upstreams) evidence.push(`upstreams: ${upstreams}`)
    const details = top(c.byDetail)
    if (details) evidence.push(`details: ${details}`)
    const burst = bursts.get(c.peakMinute)
    if (burst) evidence.push(`burst at ${c.peakMinute} UTC: ${c.peakCount} of this cause (${burst.count} gateway errors that minute, median ${burst.median}/min)`)
    const corr = opts.correlation?.byCause[c.cause]
    if (corr) evidence.push(`backend log ${opts.correlation?.backendLog}: ${corr.seen} of ${corr.seen + corr.notSeen} failed request IDs reached the backend, ${corr.notSeen} never did`)
    for (const s of c.samples) evidence.push(`${summary.path}:${s.line}: ${s.raw}`)
    return {
      id: `logs.${c.cause}`, severity: severityOf(c.cause), cause: c.cause === 'unclassified' ? null : c.cause,
      title, evidence, fix: fixFor(c, opts.system), likelihood: share, target: summary.path,
    }
  })
}

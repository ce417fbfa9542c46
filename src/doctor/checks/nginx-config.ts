/**
 * Static checks of an nginx configuration: settings that lead to 502/504s, each found
 * with the file:line that causes it and the fix in nginx directives.
 */
import { isIP } from 'node:net'
import type { Finding } from '../finding.ts'
import type { NginxLocation, NginxModel, NginxServer, NginxUpstream, SettingName, SourceRef } from '../nginx/model.ts'
import { formatNginxSize, formatNginxTime } from '../nginx/units.ts'

/** Options of {@link checkNginxConfig}. */
export interface NginxCheckOptions {
  /** Largest upstream response header section seen by a probe, in bytes; enables the proxy_buffer_size check. */
  observedMaxHeaderBytes?: number
}

/** Keep-alive timeout of Node.js and most application servers (ms); nginx must close idle connections before this. */
const TYPICAL_BACKEND_KEEPALIVE_MS = 5000
/** nginx documents that proxy_connect_timeout "cannot usually exceed 75 seconds". */
const CONNECT_TIMEOUT_CAP_MS = 75_000
/** Ports that by convention speak plain HTTP. */
const PLAIN_PORTS = new Set([80, 8080, 3000, 5000, 8000])
/** Ports that by convention speak HTTPS. */
const TLS_PORTS = new Set([443, 8443])

function at(r: SourceRef): string {
  return `${r.file}:${r.line}`
}

/** Names that need no DNS (loopback aliases from /etc/hosts) do not move. */
function isDnsName(host: string): boolean {
  return isIP(host) === 0 && host !== 'localhost' && !host.endsWith('.localhost')
}

interface Proxied {
  server: NginxServer
  location: NginxLocation
}

function proxiedLocations(model: NginxModel): Proxied[] {
  return model.servers.flatMap((server) => server.locations.filter((l) => l.proxyPass).map((location) => ({ server, location })))
}

function label({ server, location }: Proxied): string {
  return `server ${server.serverNames[0] ?? server.listen[0]} location ${location.match} (${at(location)})`
}

function resolverOf(model: NginxModel, up: NginxUpstream): string[] | null {
  return up.resolver ?? model.httpSettings.resolver
}

function resolveOnce(model: NginxModel, proxied: Proxied[]): Finding[] {
  const out: Finding[] = []
  const used = new Set(proxied.map((p) => p.location.proxyPass?.upstream).filter((u): u is string => !!u))
  for (const up of model.upstreams) {
    if (!used.has(up.name)) continue
    const names = up.servers.filter((s) => !s.unix && !s.resolve && isDnsName(s.host))
    if (names.length === 0) continue
    const resolver = resolverOf(model, up)?.join(' ') ?? '127.0.0.53'
    out.push({
      id: 'nginx.resolve_once', severity: 'warning', cause: 'dns_error', likelihood: 0.2,
      title: `upstream ${up.name}: host names are resolved once, at start; if the backend moves, nginx keeps using the old address`,
      evidence: names.map((s) => `${at(s)}: server ${s.address} is resolved only when nginx starts or reloads`),
      fix: `Re-resolve at run time: in "upstream ${up.name}" add "zone ${up.name} 64k;" and "resolver ${resolver} valid=30s;", and add the "resolve" parameter: ` +
        names.map((s) => `"server ${s.address} resolve;"`).join(', ') +
        ` (nginx ≥ 1.27.3); or set "resolver ${resolver} valid=30s;" in the server and proxy through a variable: "set $backend ${names[0].address}; proxy_pass http://$backend;".`,
      target: up.name,
    })
  }
  for (const p of proxied) {
    const pp = p.location.proxyPass
    if (!pp || pp.upstream || pp.unix) continue
    const resolver = p.location.settings.resolver
    if (pp.host === null) {
      if (resolver === null) {
        out.push({
          id: 'nginx.no_resolver', severity: 'warning', cause: 'dns_error', likelihood: 0.3,
          title: `proxy_pass ${pp.raw} is resolved per request but no resolver is set: it works only when the variable names an upstream block or an IP address`,
          evidence: [`${at(pp)}: proxy_pass ${pp.raw} in ${label(p)}; no "resolver" in scope`],
          fix: 'Add "resolver <DNS server IP> valid=30s;" (e.g. 127.0.0.53 or the cluster DNS) in the server or http block, or make the variable name an upstream block.',
          target: pp.raw,
        })
      }
      continue
    }
    if (!isDnsName(pp.host)) continue
    if (pp.runtimeResolved && resolver === null) {
      out.push({
        id: 'nginx.no_resolver', severity: 'error', cause: 'dns_error', likelihood: 0.6,
        title: `proxy_pass ${pp.raw} resolves ${pp.host} per request but no resolver is set: every request fails with 502 ("no resolver defined to resolve ${pp.host}")`,
        evidence: [`${at(pp)}: proxy_pass ${pp.raw} in ${label(p)}; no "resolver" in scope`],
        fix: 'Add "resolver <DNS server IP> valid=30s;" (e.g. 127.0.0.53 or the cluster DNS) and "resolver_timeout 5s;" in the server or http block.',
        target: pp.host,
      })
    } else if (!pp.runtimeResolved) {
      out.push({
        id: 'nginx.resolve_once', severity: 'warning', cause: 'dns_error', likelihood: 0.2,
        title: `proxy_pass ${pp.raw}: ${pp.host} is resolved once, at start; if the backend moves, nginx keeps using the old address`,
        evidence: [`${at(pp)}: proxy_pass ${pp.raw} in ${label(p)}${resolver === null ? '; no "resolver" in scope' : '; a "resolver" is set but proxy_pass has no variable, so it is not used'}`],
        fix: `Add "resolver ${resolver?.join(' ') ?? '127.0.0.53'} valid=30s;" and proxy through a variable: "set $backend ${pp.host}${pp.port ? `:${pp.port}` : ''}; proxy_pass ${pp.scheme}://$backend${pp.uri.includes('$') ? '' : '$request_uri'};" (a variable URI replaces the location prefix rewriting; check the path).`,
        target: pp.host,
      })
    }
  }
  return out
}

const KEEPALIVE_FIX = "in the upstream block `keepalive 32;`, and where it is proxied `proxy_http_version 1.1;` and `proxy_set_header Connection \"\";`"

function keepalive(model: NginxModel, proxied: Proxied[]): Finding[] {
  const out: Finding[] = []
  const byUpstream = new Map<string, Proxied[]>()
  const direct: Proxied[] = []
  for (const p of proxied) {
    const name = p.location.proxyPass?.upstream
    if (name) byUpstream.set(name, [...(byUpstream.get(name) ?? []), p])
    else direct.push(p)
  }
  for (const up of model.upstreams) {
    const uses = byUpstream.get(up.name)
    if (!uses) continue
    if (up.keepalive === null) {
      out.push({
        id: 'nginx.keepalive_missing', severity: 'warning', cause: 'connection_limit_reached', likelihood: 0.2,
        title: `upstream ${up.name} has no "keepalive": every request opens a new connection, which under load exhausts ephemeral ports ("(99: Cannot assign requested address)")`,
        evidence: [`${at(up)}: upstream ${up.name} { ... } without keepalive`],
        fix: `Reuse connections: ${KEEPALIVE_FIX}.`,
        target: up.name,
      })
      continue
    }
    const ineffective = uses.filter((p) => p.location.settings.httpVersion !== '1.1' || (p.location.settings.headers.connection ?? 'close') !== '')
    if (ineffective.length > 0) {
      out.push({
        id: 'nginx.keepalive_ineffective', severity: 'warning', cause: 'connection_limit_reached', likelihood: 0.25,
        title: `upstream ${up.name} sets "keepalive ${up.keepalive}" but connections are not reused where it is proxied (HTTP/1.0 or "Connection: close" sent): ephemeral port exhaustion risk`,
        evidence: ineffective.map((p) => {
          const s = p.location.settings
          const why = [
            s.httpVersion !== '1.1' ? `proxy_http_version ${s.httpVersion}${s.sources.httpVersion ? '' : ' (default)'}` : '',
            (s.headers.connection ?? 'close') !== '' ? `Connection "${s.headers.connection ?? 'close'}"${s.sources.headers ? ` (proxy_set_header at ${at(s.sources.headers)} replaces inherited headers)` : ' (default)'}` : '',
          ].filter(Boolean).join(', ')
          return `${label(p)}: ${why}`
        }),
        fix: 'In each of these locations set `proxy_http_version 1.1;` and `proxy_set_header Connection "";` (a location with its own proxy_set_header inherits none from above, so repeat it there).',
        target: up.name,
      })
    }
    if (up.keepaliveTimeoutMs >= TYPICAL_BACKEND_KEEPALIVE_MS) {
      out.push({
        id: 'nginx.keepalive_race', severity: 'warning', cause: 'connection_terminated', likelihood: 0.3,
        title: `upstream ${up.name}: keepalive_timeout ${formatNginxTime(up.keepaliveTimeoutMs)} is not below the typical backend keep-alive of 5s: nginx may reuse a connection the backend is closing (502, "upstream prematurely closed connection")`,
        evidence: [`${at(up)}: upstream ${up.name}: keepalive_timeout ${formatNginxTime(up.keepaliveTimeoutMs)}${up.keepaliveTimeoutMs === 60_000 ? ' (default 60s)' : ''}`,
          'The backend\'s real keep-alive timeout is measured by the keep-alive probe.'],
        fix: `In "upstream ${up.name}" set "keepalive_timeout 4s;" (below the backend's keep-alive timeout), or raise the backend's keep-alive timeout above nginx's.`,
        target: up.name,
      })
    }
  }
  if (direct.length > 0) {
    out.push({
      id: 'nginx.keepalive_missing', severity: 'info', cause: 'connection_limit_reached', likelihood: 0.1,
      title: 'proxy_pass straight to an address opens a new connection per request (no upstream block, so no keepalive): ephemeral port exhaustion risk under load',
      evidence: direct.map((p) => `${label(p)}: proxy_pass ${p.location.proxyPass?.raw}`),
      fix: `Define an upstream block for the backend and proxy to it: ${KEEPALIVE_FIX}.`,
    })
  }
  return out
}

/** Groups findings about an inherited setting by where it is written, so one bad line gives one finding. */
function bySource(proxied: Proxied[], key: SettingName, bad: (p: Proxied) => boolean): Map<string, Proxied[]> {
  const groups = new Map<string, Proxied[]>()
  for (const p of proxied) {
    if (!bad(p)) continue
    const src = p.location.settings.sources[key]
    const k = src ? at(src) : 'default'
    groups.set(k, [...(groups.get(k) ?? []), p])
  }
  return groups
}

function timeouts(proxied: Proxied[]): Finding[] {
  const out: Finding[] = []
  const zero: [SettingName, string, 'connection_timeout' | 'http_response_timeout'][] = [
    ['connectTimeoutMs', 'proxy_connect_timeout', 'connection_timeout'],
    ['readTimeoutMs', 'proxy_read_timeout', 'http_response_timeout'],
    ['sendTimeoutMs', 'proxy_send_timeout', 'http_response_timeout'],
  ]
  for (const [key, directive, cause] of zero) {
    for (const [where, ps] of bySource(proxied, key, (p) => p.location.settings[key] === 0)) {
      out.push({
        id: 'nginx.timeout_zero', severity: 'error', cause, likelihood: 0.5,
        title: `${directive} is 0: nginx times out at once instead of waiting`,
        evidence: [`${where}: ${directive} 0`, ...ps.map(label)],
        fix: `Set a real value, e.g. "${directive} ${directive === 'proxy_connect_timeout' ? '5s' : '60s'};".`,
      })
    }
  }
  const inverted = bySource(proxied, 'readTimeoutMs', (p) => p.location.settings.readTimeoutMs > 0 && p.location.settings.readTimeoutMs < p.location.settings.connectTimeoutMs)
  for (const [where, ps] of inverted) {
    const s = ps[0].location.settings
    out.push({
      id: 'nginx.timeout_order', severity: 'warning', cause: 'http_response_timeout', likelihood: 0.3,
      title: `proxy_read_timeout ${formatNginxTime(s.readTimeoutMs)} is shorter than proxy_connect_timeout ${formatNginxTime(s.connectTimeoutMs)}: the response gets less time than the TCP handshake`,
      evidence: [`${where}: proxy_read_timeout ${formatNginxTime(s.readTimeoutMs)}`, ...ps.map(label)],
      fix: 'Keep proxy_connect_timeout short (a few seconds: a handshake takes milliseconds) and proxy_read_timeout above the slowest expected response, e.g. "proxy_connect_timeout 5s; proxy_read_timeout 60s;".',
    })
  }
  for (const [where, ps] of bySource(proxied, 'connectTimeoutMs', (p) => p.location.settings.connectTimeoutMs > CONNECT_TIMEOUT_CAP_MS)) {
    out.push({
      id: 'nginx.connect_timeout_capped', severity: 'info', cause: 'connection_timeout', likelihood: 0.05,
      title: `proxy_connect_timeout ${formatNginxTime(ps[0].location.settings.connectTimeoutMs)} is above 75s, which nginx documents it usually cannot exceed (the kernel gives up first)`,
      evidence: [`${where}: proxy_connect_timeout ${formatNginxTime(ps[0].location.settings.connectTimeoutMs)}`],
      fix: 'Use a short connect timeout, e.g. "proxy_connect_timeout 5s;", and let proxy_next_upstream try another server.',
    })
  }
  return out
}

function schemes(model: NginxModel): Finding[] {
  const out: Finding[] = []
  const seen = new Set<string>()
  for (const t of model.targets) {
    const key = `${t.url} ${t.file}:${t.line}`
    if (seen.has(key)) continue
    seen.add(key)
    const where = `${at(t)}: location ${t.location} proxies to ${t.url}${t.upstream ? ` (upstream ${t.upstream})` : ''}`
    if (t.scheme === 'https' && PLAIN_PORTS.has(t.port)) {
      out.push({
        id: 'nginx.scheme_mismatch', severity: 'error', cause: 'tls_protocol_error', likelihood: 0.7,
        title: `proxy_pass https:// to port ${t.port}, which conventionally speaks plain HTTP: the TLS handshake fails ("SSL_do_handshake() failed ... wrong version number")`,
        evidence: [where],
        fix: `If ${t.host}:${t.port} speaks plain HTTP, use "proxy_pass http://..."; if it really is TLS, keep https and ignore this.`,
        target: t.url,
      })
    } else if (t.scheme === 'http' && TLS_PORTS.has(t.port)) {
      out.push({
        id: 'nginx.scheme_mismatch', severity: 'error', cause: 'http_protocol_error', likelihood: 0.7,
        title: `proxy_pass http:// to port ${t.port}, which conventionally speaks TLS: the backend answers a TLS alert or a 400 ("upstream sent no valid HTTP/1.0 header")`,
        evidence: [where],
        fix: `Use "proxy_pass https://..." with "proxy_ssl_server_name on;" (and "proxy_ssl_verify on;" with "proxy_ssl_trusted_certificate"); if ${t.host}:${t.port} really is plain HTTP, ignore this.`,
        target: t.url,
      })
    }
  }
  return out
}

/** Smallest power-of-two size in KiB (at least 8k) that holds the header section. */
function bufferFor(bytes: number): number {
  let size = 8192
  while (size < bytes) size *= 2
  return size
}

function headerBuffer(proxied: Proxied[], observed: number | undefined): Finding[] {
  if (observed === undefined) return []
  const out: Finding[] = []
  for (const [where, ps] of bySource(proxied, 'bufferSizeBytes', (p) => p.location.settings.bufferSizeBytes < observed)) {
    const have = ps[0].location.settings.bufferSizeBytes
    const want = formatNginxSize(bufferFor(observed))
    out.push({
      id: 'nginx.header_buffer_small', severity: 'error', cause: 'http_response_header_section_size', likelihood: 0.8,
      title: `an upstream sent a ${observed}-byte response header section but proxy_buffer_size is ${formatNginxSize(have)}: nginx answers 502 ("upstream sent too big header")`,
      evidence: [`${where === 'default' ? 'proxy_buffer_size not set (default 4k, one memory page)' : `${where}: proxy_buffer_size ${formatNginxSize(have)}`}`, ...ps.map(label)],
      fix: `Raise the header buffer: "proxy_buffer_size ${want}; proxy_buffers 8 ${want};" (proxy_busy_buffers_size must stay below the proxy_buffers total minus one buffer), or trim the response headers (often cookies).`,
    })
  }
  return out
}

/**
 * Static findings about an nginx configuration, each with the evidence (file:line) and
 * the fix in nginx directives, ranked most likely first:
 * - `nginx.resolve_once` / `nginx.no_resolver` (dns_error): host names resolved once at
 *   start, or a variable proxy_pass with no `resolver`;
 * - `nginx.keepalive_missing` / `nginx.keepalive_ineffective` (connection_limit_reached):
 *   no upstream `keepalive`, or `proxy_http_version 1.1` / `proxy_set_header Connection ""`
 *   missing, so each request uses a new ephemeral port;
 * - `nginx.keepalive_race` (connection_terminated): upstream `keepalive_timeout` (default
 *   60s) not below the 5s keep-alive typical of backends;
 * - `nginx.timeout_zero`, `nginx.timeout_order`, `nginx.connect_timeout_capped`: timeouts
 *   of 0, proxy_read_timeout below proxy_connect_timeout, connect above 75s;
 * - `nginx.scheme_mismatch`: `https://` to ports 80/8080/3000/5000/8000
 *   (tls_protocol_error), `http://` to 443/8443 (http_protocol_error);
 * - `nginx.header_buffer_small` (http_response_header_section_size): proxy_buffer_size
 *   (default 4k) below `opts.observedMaxHeaderBytes`.
 *
 * Sources: ngx_http_proxy_module and ngx_http_upstream_module documentation (defaults).
 *
 * @param model the model from readNginxConfig
 * @param opts.observedMaxHeaderBytes largest response header section a probe saw, in bytes
 * @returns findings, most likely first; empty when nothing is wrong
 */
export function checkNginxConfig(model: NginxModel, opts: NginxCheckOptions = {}): Finding[] {
  const proxied = proxiedLocations(model)
  const findings = [
    ...schemes(model),
    ...resolveOnce(model, proxied),
    ...keepalive(model, proxied),
    ...timeouts(proxied),
    ...headerBuffer(proxied, opts.observedMaxHeaderBytes),
  ]
  return findings.sort((a, b) => b.likelihood - a.likelihood)
}

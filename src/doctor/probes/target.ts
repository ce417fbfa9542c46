/** What doctor probes: an upstream endpoint plus the proxy settings it is judged against, and fixes worded for that proxy. */
import { formatDuration } from '../../config/units.ts'
import type { Finding } from '../finding.ts'

/** The system diagnosed; decides the vocabulary of fixes. */
export type System = 'portico' | 'nginx' | 'upstream'

/**
 * The proxy's settings towards one upstream, all in ms or bytes. Defaults follow the
 * system: Portico's schema defaults, or nginx's documented directive defaults.
 */
export interface ProxySettings {
  /** TCP (and TLS) connect timeout, ms (Portico `timeouts.connect`, nginx `proxy_connect_timeout`). */
  connectTimeoutMs: number
  /** First-byte timeout, ms (Portico `timeouts.response_header`, nginx `proxy_read_timeout`). */
  responseHeaderTimeoutMs: number
  /** Longest silence the proxy allows between two body reads from the upstream, ms (Portico `timeouts.idle`, nginx `proxy_read_timeout`). */
  bodyIdleTimeoutMs: number
  /** How long the proxy keeps an idle upstream connection, ms; null when it does not reuse upstream connections (nginx without `keepalive` in the upstream block). */
  keepaliveIdleTimeoutMs: number | null
  /** Largest response header section the proxy accepts, bytes (Portico `max_response_header_size`, nginx `proxy_buffer_size`). */
  maxResponseHeaderBytes: number
}

/** Portico's defaults (src/config/schema.ts). */
export const PORTICO_DEFAULTS: Readonly<ProxySettings> = Object.freeze({
  connectTimeoutMs: 2000,
  responseHeaderTimeoutMs: 30_000,
  bodyIdleTimeoutMs: 60_000,
  keepaliveIdleTimeoutMs: 4000,
  maxResponseHeaderBytes: 16 * 1024,
})

/** nginx's defaults (ngx_http_proxy_module and ngx_http_upstream_module docs; proxy_buffer_size is one page, 4k on x86-64). */
export const NGINX_DEFAULTS: Readonly<ProxySettings> = Object.freeze({
  connectTimeoutMs: 60_000,
  responseHeaderTimeoutMs: 60_000,
  bodyIdleTimeoutMs: 60_000,
  keepaliveIdleTimeoutMs: null,
  maxResponseHeaderBytes: 4096,
})

/** The protocol nginx speaks to an upstream, by the directive that names it (`proxy_pass`, `fastcgi_pass`, ...). */
export type UpstreamProtocol = 'http' | 'fastcgi' | 'uwsgi' | 'scgi' | 'grpc'

/** The directive prefix nginx uses for each upstream protocol: `proxy_read_timeout`, `fastcgi_read_timeout`, ... */
export const NGINX_PREFIX: Readonly<Record<UpstreamProtocol, string>> = Object.freeze({ http: 'proxy', fastcgi: 'fastcgi', uwsgi: 'uwsgi', scgi: 'scgi', grpc: 'grpc' })

/** One endpoint to probe. */
export interface Target {
  /** Endpoint URL as configured, e.g. `http://127.0.0.1:8080` (a path is kept for `--upstream` URLs). */
  url: string
  scheme: 'http' | 'https'
  /** Host name or IP literal, without IPv6 brackets. */
  host: string
  port: number
  /** Path and query used for HTTP probes; `/` by default. */
  path: string
  /** Upstream (pool) name: a Portico upstream or an nginx `upstream` block; absent for bare URLs. */
  upstream?: string
  /** Where the target came from, e.g. `portico.yaml upstreams.api` or `nginx.conf:12 proxy_pass`. */
  source?: string
  system: System
  proxy: ProxySettings
  /** What the proxy speaks to it; default `http` (HTTP/1.x). Only `http` endpoints get the HTTP, TLS and keep-alive probes. */
  protocol?: UpstreamProtocol
  /** Unix domain socket path, when the endpoint is one (`host` is then the path and `port` 0). */
  socketPath?: string
  /** nginx `user` the workers run as (they open the upstream sockets), when diagnosing nginx. */
  nginxUser?: string
  /** nginx only: the block the pass directive is in, for fixes, e.g. ``location /` block (nginx.conf:12)`. */
  location?: string
  /** nginx only: the pass directive as written, e.g. `proxy_pass http://unix:/run/app.sock:`. */
  pass?: string
  /** nginx only: `proxy_ssl_verify on` (or the grpc/uwsgi equivalent): a certificate problem fails every request. */
  sslVerify?: boolean
  /** Portico only: DNS servers of the upstream's `dns.resolvers`, asked instead of the system's. */
  resolvers?: string[]
  /** FastCGI only: a path the application answers cheaply (php-fpm `ping.path`), from a location that passes it. */
  fastcgiPing?: string
}

/**
 * Builds a target from an endpoint URL.
 *
 * @param url `http://host:port[/path]` or `https://…`
 * @throws {TypeError} when the URL does not parse or its scheme is not http/https
 */
export function targetFromUrl(url: string, system: System, proxy: ProxySettings, extra: Partial<Pick<Target, 'upstream' | 'source' | 'protocol' | 'nginxUser' | 'location' | 'pass' | 'sslVerify' | 'resolvers' | 'fastcgiPing'>> = {}): Target {
  const unix = /^(?:(https?):\/\/)?unix:(\/[^:]*)/.exec(url)
  if (unix) return { url, scheme: unix[1] === 'https' ? 'https' : 'http', host: unix[2], port: 0, path: '/', socketPath: unix[2], system, proxy: { ...proxy }, ...extra }
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new TypeError(`invalid URL "${url}": expected http://host:port or https://host:port`)
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new TypeError(`invalid URL "${url}": the scheme must be http or https`)
  if (!u.hostname) throw new TypeError(`invalid URL "${url}": no host`)
  const scheme = u.protocol === 'https:' ? 'https' : 'http'
  const port = u.port ? Number(u.port) : scheme === 'https' ? 443 : 80
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname
  return { url, scheme, host, port, path: (u.pathname || '/') + u.search, system, proxy: { ...proxy }, ...extra }
}

/** `host:port` with IPv6 literals bracketed, for evidence lines and Host headers. */
export function hostPort(host: string, port: number): string {
  if (port === 0 && host.startsWith('/')) return `unix:${host}`
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}

/** Formats ms as an nginx time (`150ms`, `5s`): nginx accepts ms, s, m, h. */
function nginxTime(ms: number): string {
  return formatDuration(Math.max(1, Math.round(ms)))
}

function porticoKey(t: Target, key: string): string {
  return `upstreams.${t.upstream ?? '<name>'}.${key}`
}

function nginxUpstream(t: Target): string {
  return t.upstream ? `the \`upstream ${t.upstream}\` block` : 'the upstream block'
}

/** An nginx directive of the target's protocol: `proxy_read_timeout`, `fastcgi_read_timeout`, ... */
export function nginxDirective(t: Target, suffix: string): string {
  return `${NGINX_PREFIX[t.protocol ?? 'http']}_${suffix}`
}

/** `the location / (nginx.conf:12)`: the block a location-level directive goes in. */
function nginxLocation(t: Target): string {
  return t.location ? `the ${t.location}` : `the location that passes to ${t.url}`
}

/** The pass directive as written, or one naming the endpoint. */
function nginxPass(t: Target): string {
  return `${t.pass ?? `${nginxDirective(t, 'pass')} ${t.url}`};`
}

/** A timeout that covers `measuredMs` with a 50 % margin: rounded up to 100 ms below 600 ms, else to whole seconds and at least 1 s more than measured. */
export function timeoutAbove(measuredMs: number): number {
  // Sub-second latencies (lab set-ups, fast APIs) round to 100 ms; the rest to whole seconds, at least 1 s more.
  if (measuredMs < 600) return Math.ceil((measuredMs * 1.5 + 1) / 100) * 100
  return Math.ceil(Math.max(measuredMs * 1.5, measuredMs + 1000) / 1000) * 1000
}

/** The smallest power-of-two buffer in KiB, at least 8 KiB, that holds `bytes` with room to spare (the next power strictly above). */
export function bufferAbove(bytes: number): number {
  let kib = 8
  while (kib * 1024 <= bytes) kib *= 2
  return kib
}

/** A keep-alive timeout safely below a measured idle close: 75 % of it, rounded down to 10 ms (at least 1 ms). */
export function keepaliveBelow(backendMs: number): number {
  return Math.max(1, Math.floor((backendMs * 0.75) / 10) * 10 || Math.floor(backendMs * 0.75))
}

/**
 * Fix texts in the vocabulary of the system diagnosed: nginx directives (of the
 * protocol used: `proxy_*`, `fastcgi_*`, `uwsgi_*`, `scgi_*`, `grpc_*`) with the block
 * they go in, Portico key paths for Portico configs and bare `--upstream` URLs. Values
 * are computed from what the probes measured.
 */
export const fixes = {
  /** Proxy keeps idle upstream connections longer than the backend: shorten the proxy side to `proxyMs`, or lengthen the backend. */
  keepaliveIdle(t: Target, proxyMs: number, backendMs: number): string {
    const backend = `or raise the backend's keep-alive timeout above ${formatDuration(t.proxy.keepaliveIdleTimeoutMs ?? 0)}`
    if (t.system === 'nginx') return `Set \`keepalive_timeout ${nginxTime(proxyMs)};\` in ${nginxUpstream(t)} (below the backend's measured idle close of ${formatDuration(backendMs)}), ${backend}.`
    return `Set \`${porticoKey(t, 'keepalive.idle_timeout')}: ${nginxTime(proxyMs)}\` (below the backend's measured idle close of ${formatDuration(backendMs)}), ${backend}.`
  },
  /**
   * First-byte timeout too short for the backend's latency: a value above `measuredMs`
   * (the slowest answer measured) with a 50 % margin; when nothing answered within the
   * probe's wait, at least that wait.
   */
  responseHeaderTimeout(t: Target, measuredMs: number, answered = true): string {
    const current = t.proxy.responseHeaderTimeoutMs
    if (!answered && current >= measuredMs) {
      // The proxy already waits longer than the probe did: a bigger number is no fix for a backend that may never answer.
      const key = t.system === 'nginx' ? `\`${nginxDirective(t, 'read_timeout')}\`` : `\`${porticoKey(t, 'timeouts.response_header')}\``
      return `The proxy already waits ${formatDuration(current)} (${key}); nothing answered within the ${formatDuration(Math.round(measuredMs))} the probe waited: rerun doctor with \`--timeout ${formatDuration(Math.ceil((current + 1000) / 1000) * 1000)}\` to see whether it answers at all before changing the timeout.`
    }
    const value = timeoutAbove(measuredMs)
    const why = answered
      ? `the slowest answer measured took ${formatDuration(Math.round(measuredMs))}; ${formatDuration(value)} leaves a 50 % margin`
      : `nothing answered within the ${formatDuration(Math.round(measuredMs))} the probe waited, so a working value is above that: rerun doctor with a longer \`--timeout\` to measure the real latency`
    const app = 'or make the application answer faster'
    if (t.system === 'nginx') return `Set \`${nginxDirective(t, 'read_timeout')} ${nginxTime(value)};\` in ${nginxLocation(t)} (${why}), ${app}.`
    return `Set \`${porticoKey(t, 'timeouts.response_header')}: ${nginxTime(value)}\` (${why}), ${app}.`
  },
  /** The body stalls longer than the proxy waits between two reads: an idle timeout above the silence measured with a 50 % margin, or a steadier backend. */
  bodyIdleTimeout(t: Target, gapMs: number): string {
    const value = timeoutAbove(gapMs)
    const why = `the longest silence measured was ${formatDuration(Math.round(gapMs))}; ${formatDuration(value)} leaves a 50 % margin`
    const app = 'or make the application send its body without long pauses (flush regularly; for long work, answer 202 and poll)'
    if (t.system === 'nginx') return `Set \`${nginxDirective(t, 'read_timeout')} ${nginxTime(value)};\` in ${nginxLocation(t)} (it bounds each wait between two reads, header and body; ${why}), ${app}.`
    return `Set \`${porticoKey(t, 'timeouts.idle')}: ${nginxTime(value)}\` (${why}), ${app}.`
  },
  /** The backend ends the body before its declared end. */
  incompleteBody(t: Target): string {
    const limits = t.system === 'nginx'
      ? `\`${nginxDirective(t, 'read_timeout')}\`/\`${nginxDirective(t, 'send_timeout')}\` in ${nginxLocation(t)}`
      : `\`${porticoKey(t, 'timeouts.idle')}\` or \`${porticoKey(t, 'timeouts.total')}\``
    return `No proxy setting fixes this: the backend (or something between, such as a load balancer or a firewall idle timer) cuts the response short. Check the application logs for crashes, killed workers (OOM, worker timeouts such as gunicorn \`--timeout\`), write timeouts or a Content-Length that does not match what it sends. If it only happens on large or slow bodies, compare its own send timeouts with ${limits}.`
  },
  /** Connect timeout: a full listen backlog, a firewall or a down host; the fix is on the backend or network side. */
  connect(t: Target, measuredMs?: number): string {
    const key = t.system === 'nginx' ? `\`${nginxDirective(t, 'connect_timeout')} 5s;\` in ${nginxLocation(t)}` : `\`${porticoKey(t, 'timeouts.connect')}: 2s\``
    const waited = measuredMs === undefined ? '' : ` (no SYN-ACK within ${formatDuration(Math.round(measuredMs))})`
    return `The backend does not complete TCP handshakes${waited}: if it runs, its listen backlog is full (it accepts too slowly: \`ss -lnt\` shows Recv-Q at Send-Q), so raise the application's backlog (e.g. gunicorn \`--backlog 2048\`, Node \`server.listen({ backlog: 2048 })\`) together with \`net.core.somaxconn\`, and add workers; otherwise open the firewall for the port or bring the host up. Keep ${key} short so a retry can go to another endpoint.`
  },
  /** Response header section larger than the proxy accepts: a buffer rounded up from the measured size. */
  headerSize(t: Target, bytes: number): string {
    const kib = bufferAbove(bytes)
    const why = `the largest header section measured is ${bytes} bytes`
    if (t.system === 'nginx') {
      const d = (s: string) => nginxDirective(t, s)
      const set = t.protocol === 'grpc'
        ? `\`${d('buffer_size')} ${kib}k;\``
        : `\`${d('buffer_size')} ${kib}k; ${d('buffers')} 8 ${kib}k; ${d('busy_buffers_size')} ${kib * 2}k;\``
      return `Set ${set} in ${nginxLocation(t)} (${why}; the busy buffers must hold two of them), or send smaller response headers (often cookies).`
    }
    return `Set \`${porticoKey(t, 'max_response_header_size')}: ${kib}KiB\` (${why}), or send smaller response headers (often cookies).`
  },
  /** The endpoint speaks the other scheme. */
  scheme(t: Target, scheme: 'http' | 'https'): string {
    const url = `${scheme}://${hostPort(t.host, t.port)}`
    if (t.system === 'nginx') {
      if (t.protocol === 'grpc') return `Use \`grpc_pass ${scheme === 'https' ? 'grpcs' : 'grpc'}://${t.upstream ?? hostPort(t.host, t.port)};\` in ${nginxLocation(t)}, or make the backend speak ${t.scheme === 'https' ? 'TLS' : 'plain HTTP/2'} on that port.`
      const pass = t.upstream ? `proxy_pass ${scheme}://${t.upstream};` : `proxy_pass ${url};`
      return `Use \`${pass}\` in ${nginxLocation(t)}${scheme === 'https' ? ' (with `proxy_ssl_server_name on;`)' : ''}, or make the backend speak ${t.scheme === 'https' ? 'TLS' : 'plain HTTP'} on that port.`
    }
    return `Use \`${url}\` in \`${porticoKey(t, 'endpoints')}\`, or make the backend speak ${t.scheme === 'https' ? 'TLS' : 'plain HTTP'} on that port.`
  },
  /** Host name does not resolve, or the resolver does not answer. */
  dns(t: Target, what: string, resolverTimeout = false): string {
    if (t.system === 'nginx') {
      const tune = resolverTimeout ? ' Set `resolver_timeout 5s;` next to it and list a second DNS server in `resolver`.' : ''
      return `${what} nginx resolves names of a pass directive with variables (and \`server ... resolve\`) through the \`resolver\` directive of the http, server or location block (e.g. \`resolver 127.0.0.53 valid=30s;\`): check the name in \`${nginxPass(t)}\` and that resolver.${tune}`
    }
    const servers = t.resolvers?.length ? `the DNS servers of \`${porticoKey(t, 'dns.resolvers')}\` (${t.resolvers.join(', ')})` : `the system resolver (/etc/resolv.conf), or set \`${porticoKey(t, 'dns.resolvers')}\``
    return `${what} Fix the host name in \`${porticoKey(t, 'endpoints')}\`, or ${servers}.`
  },
  /** Nothing listens. */
  refused(t: Target): string {
    if (t.system === 'nginx') {
      const where = `correct the address in \`${nginxPass(t)}\` in ${nginxLocation(t)}${t.upstream ? ` or in the \`server\` lines of ${nginxUpstream(t)}` : ''}`
      const at = hostPort(t.host, t.port)
      if (t.protocol === 'fastcgi') return `Start the FastCGI server so that it listens on ${at} (php-fpm: \`systemctl start php-fpm\` with \`listen = ${at}\` in its pool), or ${where}.`
      return `Start the application on ${at}, or ${where}.`
    }
    return `Start the application on ${hostPort(t.host, t.port)}, or correct the address in \`${porticoKey(t, 'endpoints')}\`.`
  },
  /** A unix socket path that does not exist, or is stale. */
  socketMissing(t: Target, what: string): string {
    const where = t.system === 'nginx' ? `\`${nginxPass(t)}\` in ${nginxLocation(t)}` : `\`${porticoKey(t, 'endpoints')}\``
    return `${what} Start the application so that it creates ${t.socketPath} (e.g. gunicorn \`--bind unix:${t.socketPath}\`, uvicorn \`--uds ${t.socketPath}\`, php-fpm \`listen = ${t.socketPath}\`), or correct the path in ${where}.`
  },
  /** nginx workers cannot open the socket. */
  socketForbidden(t: Target, user: string, group: string | null, problem: string): string {
    return `${problem} Let the application create the socket group-writable for nginx's group (e.g. gunicorn \`--umask 007 --group ${group ?? user}\`; php-fpm \`listen.owner = ${user}\` and \`listen.mode = 0660\`), or once: \`chgrp ${group ?? user} ${t.socketPath} && chmod g+rw ${t.socketPath}\` (lost when the application recreates it), or change \`user\` in the main context of nginx.conf.`
  },
}

/** What every probe returns: its raw results as data, and the findings drawn from them. */
export interface ProbeOutput<R> {
  result: R
  findings: Finding[]
}

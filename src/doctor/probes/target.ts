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
}

/**
 * Builds a target from an endpoint URL.
 *
 * @param url `http://host:port[/path]` or `https://…`
 * @throws {TypeError} when the URL does not parse or its scheme is not http/https
 */
export function targetFromUrl(url: string, system: System, proxy: ProxySettings, extra: { upstream?: string; source?: string } = {}): Target {
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

/**
 * Fix texts in the vocabulary of the system diagnosed: nginx directives for nginx,
 * Portico keys for Portico configs and bare `--upstream` URLs.
 */
export const fixes = {
  /** Proxy keeps idle upstream connections longer than the backend: shorten the proxy side to `proxyMs`, or lengthen the backend. */
  keepaliveIdle(t: Target, proxyMs: number, backendMs: number): string {
    const backend = `or raise the backend's keep-alive timeout above ${formatDuration(t.proxy.keepaliveIdleTimeoutMs ?? 0)}`
    if (t.system === 'nginx') return `Set \`keepalive_timeout ${nginxTime(proxyMs)};\` in ${nginxUpstream(t)} (below the backend's ${formatDuration(backendMs)}), ${backend}.`
    return `Set \`${porticoKey(t, 'keepalive.idle_timeout')}: ${nginxTime(proxyMs)}\` (below the backend's ${formatDuration(backendMs)}), ${backend}.`
  },
  /** First-byte timeout too short for the backend's latency (or the backend too slow). */
  responseHeaderTimeout(t: Target, suggestedMs: number): string {
    const app = 'or make the application answer faster'
    if (t.system === 'nginx') return `Raise \`proxy_read_timeout ${nginxTime(suggestedMs)};\` in the location that proxies to ${t.url}, ${app}.`
    return `Raise \`${porticoKey(t, 'timeouts.response_header')}: ${nginxTime(suggestedMs)}\`, ${app}.`
  },
  /** The body stalls longer than the proxy waits between two reads: raise the idle timeout to `suggestedMs`, or make the backend stream steadily. */
  bodyIdleTimeout(t: Target, suggestedMs: number): string {
    const app = 'or make the application send its body without long pauses (flush regularly; for long work, answer 202 and poll)'
    if (t.system === 'nginx') return `Raise \`proxy_read_timeout ${nginxTime(suggestedMs)};\` in the location that proxies to ${t.url} (it bounds each wait between two reads, header and body), ${app}.`
    return `Raise \`${porticoKey(t, 'timeouts.idle')}: ${nginxTime(suggestedMs)}\`, ${app}.`
  },
  /** The backend ends the body before its declared end. */
  incompleteBody(t: Target): string {
    const limits = t.system === 'nginx'
      ? `\`proxy_read_timeout\`/\`proxy_send_timeout\` of nginx in front of it`
      : `\`${porticoKey(t, 'timeouts.idle')}\` or \`${porticoKey(t, 'timeouts.total')}\``
    return `The backend (or something between, such as a load balancer or a firewall idle timer) cuts the response short: check the application logs for crashes, killed workers, write timeouts or a response length that does not match what it sends. If it only happens on large or slow bodies, compare its own send timeouts with ${limits}.`
  },
  /** Connect timeout; mostly the fix is on the network or backend side. */
  connect(t: Target, what: string): string {
    const key = t.system === 'nginx' ? '`proxy_connect_timeout`' : `\`${porticoKey(t, 'timeouts.connect')}\``
    return `${what} If connects are merely slow, raise ${key}.`
  },
  /** Response header section larger than the proxy accepts. */
  headerSize(t: Target, bytes: number): string {
    // The next power of two strictly above the observed size, in KiB: both proxies size header buffers that way.
    const pow = 2 ** Math.ceil(Math.log2(Math.max(4096, bytes + 1) / 1024))
    if (t.system === 'nginx') return `Raise \`proxy_buffer_size ${pow}k;\` (and \`proxy_buffers\` to match) in the location that proxies to ${t.url}, or send smaller response headers (often cookies).`
    return `Raise \`${porticoKey(t, 'max_response_header_size')}: ${pow}KiB\`, or send smaller response headers (often cookies).`
  },
  /** The endpoint speaks the other scheme. */
  scheme(t: Target, scheme: 'http' | 'https'): string {
    const url = `${scheme}://${hostPort(t.host, t.port)}`
    if (t.system === 'nginx') return `Use \`proxy_pass ${url};\` (or \`server ${hostPort(t.host, t.port)};\` with the matching scheme in proxy_pass), or make the backend speak ${t.scheme.toUpperCase()} on that port.`
    return `Use \`${url}\` in \`${porticoKey(t, 'endpoints')}\`, or make the backend speak ${t.scheme.toUpperCase()} on that port.`
  },
  /** Host name does not resolve. */
  dns(t: Target, what: string): string {
    if (t.system === 'nginx') return `${what} nginx resolves names in \`proxy_pass\` with variables only through a \`resolver\` directive (e.g. \`resolver 127.0.0.53 valid=30s;\`); check the name and that resolver.`
    return `${what} Fix the host name in \`${porticoKey(t, 'endpoints')}\` or the resolver in /etc/resolv.conf.`
  },
  /** Nothing listens. */
  refused(t: Target): string {
    const where = t.system === 'nginx' ? '`server`/`proxy_pass` address' : `\`${porticoKey(t, 'endpoints')}\``
    return `Start the application on ${hostPort(t.host, t.port)}, or correct the port in ${where}.`
  },
}

/** What every probe returns: its raw results as data, and the findings drawn from them. */
export interface ProbeOutput<R> {
  result: R
  findings: Finding[]
}

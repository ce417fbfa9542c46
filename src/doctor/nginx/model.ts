/**
 * What doctor needs from an nginx configuration: upstreams, servers, locations and
 * their proxy targets with the effective proxy settings (nginx inheritance and defaults
 * applied), and the error/access log files with their log formats.
 */
import type { NginxConfigTree, NginxDirective } from './parse.ts'
import { NginxParseError } from './parse.ts'
import { parseNginxSize, parseNginxTime } from './units.ts'

/** Where a directive is written. */
export interface SourceRef {
  file: string
  /** 1-based line. */
  line: number
}

/** One `server` line of an `upstream` block (ngx_http_upstream_module). */
export interface UpstreamServer extends SourceRef {
  /** The address as written: `10.0.0.1:8080`, `app.internal`, `unix:/run/app.sock`. */
  address: string
  /** Host name or IP (brackets removed for IPv6); the socket path for `unix:`. */
  host: string
  /** Port; 80 when omitted (nginx default); null for a unix socket. */
  port: number | null
  unix: boolean
  /** `weight=`, default 1. */
  weight: number
  /** `max_fails=`, default 1. */
  maxFails: number
  /** `fail_timeout=` in ms, default 10 s. */
  failTimeoutMs: number
  backup: boolean
  down: boolean
  /** `resolve` parameter: the name is re-resolved at run time (needs `resolver` and `zone`). */
  resolve: boolean
}

/** An `upstream name { ... }` block. */
export interface NginxUpstream extends SourceRef {
  name: string
  servers: UpstreamServer[]
  /** `keepalive N`: idle connections cached per worker; null when absent (no connection reuse). */
  keepalive: number | null
  /** `keepalive_timeout` in ms; default 60 s. */
  keepaliveTimeoutMs: number
  /** `keepalive_requests`; default 1000. */
  keepaliveRequests: number
  /** `resolver` inside the upstream block (nginx ≥ 1.27.3), else null. */
  resolver: string[] | null
  /** `zone` name, needed by the `resolve` parameter; null when absent. */
  zone: string | null
}

/**
 * Effective proxy settings of one location after nginx inheritance
 * (http → server → location), with nginx's documented defaults.
 */
export interface ProxySettings {
  /** `proxy_connect_timeout` in ms; default 60 s. */
  connectTimeoutMs: number
  /** `proxy_read_timeout` in ms (between two reads, including the wait for the header); default 60 s. */
  readTimeoutMs: number
  /** `proxy_send_timeout` in ms; default 60 s. */
  sendTimeoutMs: number
  /** `resolver` addresses, or null when none is configured (names are resolved once at start). */
  resolver: string[] | null
  /** `resolver_timeout` in ms; default 30 s. */
  resolverTimeoutMs: number
  /** `proxy_buffer_size` in bytes: the buffer for the response header; default one page, taken as 4k. */
  bufferSizeBytes: number
  /** `proxy_buffers number size`; default 8 × 4k. */
  buffers: { count: number; sizeBytes: number }
  /** `proxy_http_version`; default `1.0`. */
  httpVersion: string
  /**
   * Effective `proxy_set_header` fields, names lower-cased. nginx inherits these only when
   * the level defines none itself. Defaults: `host: $proxy_host`, `connection: close`.
   */
  headers: Record<string, string>
  /** `proxy_next_upstream` conditions; default `error timeout`. */
  nextUpstream: string[]
  /** `proxy_next_upstream_tries`; default 0 (unlimited). */
  nextUpstreamTries: number
  /** `proxy_ssl_verify`; default off. */
  sslVerify: boolean
  /** `proxy_ssl_server_name` (send SNI); default off. */
  sslServerName: boolean
  /** `proxy_ssl_trusted_certificate`, or null. */
  sslTrustedCertificate: string | null
  /** Where each explicitly set setting was written; absent keys use the nginx default. */
  sources: Partial<Record<SettingName, SourceRef>>
}

/** Names of the settings of {@link ProxySettings} that come from one directive. */
export type SettingName =
  | 'connectTimeoutMs' | 'readTimeoutMs' | 'sendTimeoutMs' | 'resolver' | 'resolverTimeoutMs'
  | 'bufferSizeBytes' | 'buffers' | 'httpVersion' | 'headers' | 'nextUpstream' | 'nextUpstreamTries'
  | 'sslVerify' | 'sslServerName' | 'sslTrustedCertificate'

/** The directives that pass a request to an upstream, and the protocol each speaks. */
export const PASS_DIRECTIVES = Object.freeze({ proxy_pass: 'http', fastcgi_pass: 'fastcgi', uwsgi_pass: 'uwsgi', scgi_pass: 'scgi', grpc_pass: 'grpc' } as const)

/** A pass directive name. */
export type PassDirective = keyof typeof PASS_DIRECTIVES

/** A `proxy_pass` (or `fastcgi_pass`, `uwsgi_pass`, `scgi_pass`, `grpc_pass`) argument, taken apart. */
export interface ProxyPass extends SourceRef {
  /** The directive: `proxy_pass`, `fastcgi_pass`, ... */
  directive: PassDirective
  /** What it speaks: `http` for proxy_pass, else the directive's protocol. */
  protocol: (typeof PASS_DIRECTIVES)[PassDirective]
  /** The argument as written, e.g. `http://backend`, `http://$app:8080$request_uri`. */
  raw: string
  scheme: 'http' | 'https'
  /** Host after substituting `set $var` values known in scope; null when it stays a variable. */
  host: string | null
  /** Explicit port, or null (80/443 by scheme for a direct host; per-server for an upstream). */
  port: number | null
  /** URI part after the host (may contain variables); empty when none. */
  uri: string
  /** Name of the `upstream` block the host refers to, else null. */
  upstream: string | null
  /** The argument contains variables: nginx evaluates it per request and resolves a host name with `resolver`. */
  runtimeResolved: boolean
  unix: boolean
}

/** A `location` (or an `if` inside one), flattened: nested locations are listed too. */
export interface NginxLocation extends SourceRef {
  /** Modifier and URI as written, e.g. `/api/`, `= /health`, `~ \.php$`, `if ($x)`. */
  match: string
  /** The location's `proxy_pass`, or null (the static proxy checks read this one). */
  proxyPass: ProxyPass | null
  /** Whichever pass directive the location has (`proxy_pass`, `fastcgi_pass`, `uwsgi_pass`, `scgi_pass`, `grpc_pass`), or null. */
  pass: ProxyPass | null
  /** Settings of the pass directive's module (`proxy_*`, `fastcgi_*`, ...), inheritance and defaults applied. */
  passSettings: ProxySettings
  /** `fastcgi_param SCRIPT_NAME`-independent hint: the exact path of an `= /path` location (e.g. php-fpm's `= /ping`), else null. */
  exactPath: string | null
  /** `fastcgi_keep_conn on` in scope: FastCGI connections stay open for reuse. */
  fastcgiKeepConn: boolean
  settings: ProxySettings
}

/** A `server` block. */
export interface NginxServer extends SourceRef {
  /** `listen` arguments (first argument of each); default `*:80`. */
  listen: string[]
  /** `server_name` names; empty when absent. */
  serverNames: string[]
  locations: NginxLocation[]
  /** Settings at server level (what a location without overrides gets). */
  settings: ProxySettings
}

/**
 * One endpoint doctor can probe: a location's proxy_pass, expanded to each server of
 * its upstream block.
 */
export interface ProxyTarget extends SourceRef {
  /** URL to probe: `scheme://host:port` plus the literal part of the proxy_pass URI (`/` when none). */
  url: string
  scheme: 'http' | 'https'
  host: string
  port: number
  /** Upstream block name, or null for a direct `proxy_pass http://host:port`. */
  upstream: string | null
  /** Unix socket path (`unix:/path`), or null for TCP; `host` is then the path and `port` 0. */
  socketPath: string | null
  /** The pass directive used and what it speaks. */
  directive: PassDirective
  protocol: ProxyPass['protocol']
  /** The pass directive as written, e.g. `fastcgi_pass 127.0.0.1:9000;`. */
  pass: string
  /** The location's exact path (`location = /ping`), or null. */
  exactPath: string | null
  /** The `server` this location belongs to: first server_name, else first listen. */
  server: string
  location: string
  /** Host is resolved per request (variable in proxy_pass or `resolve` on the upstream server). */
  runtimeResolved: boolean
  /** Effective timeouts in ms (proxy_connect_timeout, proxy_read_timeout, proxy_send_timeout). */
  timeouts: { connectMs: number; readMs: number; sendMs: number }
  /**
   * Upstream keep-alive: null when connections are not reused (no upstream `keepalive`,
   * or proxy_http_version 1.0, or `Connection` header not cleared).
   */
  keepalive: { connections: number; timeoutMs: number; requests: number } | null
  /** The upstream `keepalive` settings as configured, whether or not the location makes them effective. */
  upstreamKeepalive: { connections: number | null; timeoutMs: number; requests: number } | null
  httpVersion: string
  settings: ProxySettings
}

/** A `log_format` definition. */
export interface LogFormatDef {
  name: string
  /** `escape=` parameter; default `default`. */
  escape: 'default' | 'json' | 'none'
  /** The format strings concatenated, e.g. `$remote_addr - $remote_user [$time_local] ...`. */
  format: string
  /** Null for the predefined `combined`. */
  source: SourceRef | null
}

/** An `error_log` directive. */
export interface ErrorLogRef extends SourceRef {
  /** Path, `stderr`, `syslog:...` or `memory:...`. */
  path: string
  /** Level; default `error`. */
  level: string
  /** Whether the path is a file doctor can read. */
  isFile: boolean
}

/** An `access_log` directive (not `off`). */
export interface AccessLogRef extends SourceRef {
  path: string
  /** Format name; default `combined`. */
  format: string
  /** The format string when the format is defined, else null. */
  formatString: string | null
  isFile: boolean
}

/** What doctor knows about an nginx configuration. */
export interface NginxModel {
  /** Main configuration file. */
  file: string
  /** `user` of the main context (the worker processes' user, which opens upstream sockets), or null when absent (then `nobody` when nginx starts as root). */
  user: string | null
  /** Every file read, main file first. */
  files: string[]
  upstreams: NginxUpstream[]
  servers: NginxServer[]
  /** Every probeable proxied endpoint, in configuration order. */
  targets: ProxyTarget[]
  /** Settings at http level. */
  httpSettings: ProxySettings
  /** `log_format` definitions by name, including the predefined `combined`. */
  logFormats: Record<string, LogFormatDef>
  errorLogs: ErrorLogRef[]
  accessLogs: AccessLogRef[]
}

/** The format nginx predefines as `combined` (ngx_http_log_module). */
export const COMBINED_FORMAT = '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"'

/** nginx defaults for the proxy settings doctor reads (ngx_http_proxy_module, ngx_http_core_module). */
export const PROXY_DEFAULTS: Readonly<Omit<ProxySettings, 'sources'>> = Object.freeze({
  connectTimeoutMs: 60_000,
  readTimeoutMs: 60_000,
  sendTimeoutMs: 60_000,
  resolver: null,
  resolverTimeoutMs: 30_000,
  bufferSizeBytes: 4096,
  buffers: { count: 8, sizeBytes: 4096 },
  httpVersion: '1.0',
  headers: { host: '$proxy_host', connection: 'close' },
  nextUpstream: ['error', 'timeout'],
  nextUpstreamTries: 0,
  sslVerify: false,
  sslServerName: false,
  sslTrustedCertificate: null,
})

/** A level of inheritance: the directives written directly in one block. */
interface Scope {
  directives: NginxDirective[]
  parent: Scope | null
  /** `set $name value` seen at this level. */
  vars: Map<string, string>
}

function scopeOf(directives: NginxDirective[], parent: Scope | null): Scope {
  const vars = new Map<string, string>()
  for (const d of directives) if (d.name === 'set' && d.args.length === 2) vars.set(d.args[0].replace(/^\$/, ''), d.args[1])
  return { directives, parent, vars }
}

/** Nearest directive of that name, walking out from the innermost level; the last one in a level wins. */
function lookup(scope: Scope | null, name: string): NginxDirective | null {
  for (let s = scope; s; s = s.parent) {
    const found = s.directives.filter((d) => d.name === name)
    if (found.length > 0) return found[found.length - 1]
  }
  return null
}

function fail(d: NginxDirective, reason: string): never {
  throw new NginxParseError(d.file, d.line, `${reason} in "${d.name}" directive`)
}

function time(d: NginxDirective, text: string | undefined): number {
  try {
    return parseNginxTime(text ?? '')
  } catch {
    return fail(d, `invalid time "${text ?? ''}"`)
  }
}

function size(d: NginxDirective, text: string | undefined): number {
  try {
    return parseNginxSize(text ?? '')
  } catch {
    return fail(d, `invalid size "${text ?? ''}"`)
  }
}

function onOff(d: NginxDirective): boolean {
  return d.args[0] === 'on'
}

function ref(d: NginxDirective): SourceRef {
  return { file: d.file, line: d.line }
}

/** Applies inheritance and defaults for one level. */
function settingsAt(scope: Scope, prefix = 'proxy'): ProxySettings {
  const s: ProxySettings = {
    ...PROXY_DEFAULTS,
    buffers: { ...PROXY_DEFAULTS.buffers },
    headers: { ...PROXY_DEFAULTS.headers },
    nextUpstream: [...PROXY_DEFAULTS.nextUpstream],
    sources: {},
  }
  const simple: [string, SettingName, (d: NginxDirective) => void][] = [
    ['proxy_connect_timeout', 'connectTimeoutMs', (d) => { s.connectTimeoutMs = time(d, d.args[0]) }],
    ['proxy_read_timeout', 'readTimeoutMs', (d) => { s.readTimeoutMs = time(d, d.args[0]) }],
    ['proxy_send_timeout', 'sendTimeoutMs', (d) => { s.sendTimeoutMs = time(d, d.args[0]) }],
    ['resolver', 'resolver', (d) => { s.resolver = d.args.filter((a) => !a.includes('=')) }],
    ['resolver_timeout', 'resolverTimeoutMs', (d) => { s.resolverTimeoutMs = time(d, d.args[0]) }],
    ['proxy_buffer_size', 'bufferSizeBytes', (d) => { s.bufferSizeBytes = size(d, d.args[0]) }],
    ['proxy_buffers', 'buffers', (d) => { s.buffers = { count: Number(d.args[0]), sizeBytes: size(d, d.args[1]) } }],
    ['proxy_http_version', 'httpVersion', (d) => { s.httpVersion = d.args[0] ?? '1.0' }],
    ['proxy_next_upstream', 'nextUpstream', (d) => { s.nextUpstream = [...d.args] }],
    ['proxy_next_upstream_tries', 'nextUpstreamTries', (d) => { s.nextUpstreamTries = Number(d.args[0]) }],
    ['proxy_ssl_verify', 'sslVerify', (d) => { s.sslVerify = onOff(d) }],
    ['proxy_ssl_server_name', 'sslServerName', (d) => { s.sslServerName = onOff(d) }],
    ['proxy_ssl_trusted_certificate', 'sslTrustedCertificate', (d) => { s.sslTrustedCertificate = d.args[0] ?? null }],
  ]
  for (const [name, key, apply] of simple) {
    // The other pass modules mirror proxy_*: fastcgi_read_timeout, grpc_buffer_size, uwsgi_ssl_verify, ...
    const d = lookup(scope, name.startsWith('proxy_') ? `${prefix}_${name.slice(6)}` : name)
    if (d) {
      apply(d)
      s.sources[key] = ref(d)
    }
  }
  // proxy_set_header is an array directive: a level that sets any header replaces
  // everything inherited, so the nearest level with at least one wins whole.
  for (let sc: Scope | null = scope; sc; sc = sc.parent) {
    const set = sc.directives.filter((d) => d.name === 'proxy_set_header')
    if (set.length === 0) continue
    for (const d of set) s.headers[(d.args[0] ?? '').toLowerCase()] = d.args[1] ?? ''
    s.sources.headers = ref(set[0])
    break
  }
  return s
}

/** Substitutes `$name` / `${name}` with `set` values visible from the scope; unknown ones stay. */
function substitute(text: string, scope: Scope): string {
  return text.replace(/\$\{(\w+)\}|\$(\w+)/g, (whole, a: string | undefined, b: string | undefined) => {
    const name = a ?? b ?? ''
    for (let s: Scope | null = scope; s; s = s.parent) {
      const v = s.vars.get(name)
      if (v !== undefined && !v.includes('$')) return v
    }
    return whole
  })
}

const HAS_VAR = /\$/

/** Splits `host:port`, `[v6]:port`, `host`; the port is null when absent. */
export function splitHostPort(text: string): { host: string; port: number | null } {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(text)
  if (v6) return { host: v6[1], port: v6[2] ? Number(v6[2]) : null }
  const m = /^([^:]*)(?::(\d+))?$/.exec(text)
  if (m) return { host: m[1], port: m[2] ? Number(m[2]) : null }
  return { host: text, port: null }
}

function parseProxyPass(d: NginxDirective, scope: Scope, upstreams: Map<string, NginxUpstream>): ProxyPass {
  const raw = d.args[0] ?? fail(d, 'invalid number of arguments')
  const directive = d.name as PassDirective
  const protocol = PASS_DIRECTIVES[directive]
  // proxy_pass needs http(s)://; grpc_pass takes grpc(s)://, uwsgi_pass (s)uwsgi://, and all but proxy_pass a bare address.
  const m = directive === 'proxy_pass' ? /^(https?):\/\/(.*)$/i.exec(raw) : /^(?:(grpcs?|suwsgi|uwsgi):\/\/)?(.*)$/i.exec(raw)
  if (!m) fail(d, `invalid URL prefix "${raw}"`)
  const given = (m[1] ?? '').toLowerCase()
  const scheme: 'http' | 'https' = given === 'https' || given === 'grpcs' || given === 'suwsgi' ? 'https' : 'http'
  const rest = substitute(m[2], scope)
  const runtimeResolved = HAS_VAR.test(raw)
  const base = { directive, protocol, raw, scheme, ...ref(d) }
  if (rest.startsWith('unix:')) {
    const path = rest.slice(5).split(':')[0]
    return { ...base, host: path, port: null, uri: '', upstream: null, runtimeResolved, unix: true }
  }
  // The authority ends at the first `/`, or at a variable that starts the URI part
  // (`http://backend$request_uri`).
  const cut = /^(\[[^\]]*\][^/$]*|[^/$]*)(.*)$/.exec(rest)
  let authority = cut ? cut[1] : rest
  let uri = cut ? cut[2] : ''
  if (authority === '' && rest.startsWith('$')) {
    // The whole authority is an unknown variable.
    const v = /^(\$\{?\w+\}?)(.*)$/.exec(rest)
    authority = v ? v[1] : rest
    uri = v ? v[2] : ''
  }
  if (HAS_VAR.test(authority)) {
    return { ...base, host: null, port: null, uri, upstream: null, runtimeResolved: true, unix: false }
  }
  const { host, port } = splitHostPort(authority)
  const upstream = port === null && upstreams.has(host) ? host : null
  return { ...base, host, port, uri, upstream, runtimeResolved, unix: false }
}

function parseUpstream(d: NginxDirective): NginxUpstream {
  const body = d.block ?? []
  const up: NginxUpstream = {
    name: d.args[0] ?? fail(d, 'invalid number of arguments'),
    servers: [], keepalive: null, keepaliveTimeoutMs: 60_000, keepaliveRequests: 1000, resolver: null, zone: null, ...ref(d),
  }
  for (const c of body) {
    switch (c.name) {
      case 'server': {
        const address = c.args[0] ?? fail(c, 'invalid number of arguments')
        const unix = address.startsWith('unix:')
        const hp = unix ? { host: address.slice(5), port: null } : splitHostPort(address)
        const s: UpstreamServer = {
          address, host: hp.host, port: unix ? null : (hp.port ?? 80), unix,
          weight: 1, maxFails: 1, failTimeoutMs: 10_000, backup: false, down: false, resolve: false, ...ref(c),
        }
        for (const p of c.args.slice(1)) {
          const [k, v] = p.split('=', 2)
          if (k === 'weight') s.weight = Number(v)
          else if (k === 'max_fails') s.maxFails = Number(v)
          else if (k === 'fail_timeout') s.failTimeoutMs = time(c, v)
          else if (k === 'backup') s.backup = true
          else if (k === 'down') s.down = true
          else if (k === 'resolve') s.resolve = true
        }
        up.servers.push(s)
        break
      }
      case 'keepalive': up.keepalive = Number(c.args[0]); break
      case 'keepalive_timeout': up.keepaliveTimeoutMs = time(c, c.args[0]); break
      case 'keepalive_requests': up.keepaliveRequests = Number(c.args[0]); break
      case 'resolver': up.resolver = c.args.filter((a) => !a.includes('=')); break
      case 'zone': up.zone = c.args[0] ?? null; break
    }
  }
  return up
}

function isFilePath(path: string): boolean {
  return path !== 'stderr' && path !== 'off' && !path.startsWith('syslog:') && !path.startsWith('memory:')
}

/** State gathered while walking the tree. */
interface Walk {
  upstreams: Map<string, NginxUpstream>
  logFormats: Record<string, LogFormatDef>
  errorLogs: ErrorLogRef[]
  accessLogDirectives: NginxDirective[]
}

function collectLogs(directives: NginxDirective[], w: Walk): void {
  for (const d of directives) {
    if (d.name === 'error_log' && d.args[0]) {
      w.errorLogs.push({ path: d.args[0], level: d.args[1] ?? 'error', isFile: isFilePath(d.args[0]), ...ref(d) })
    } else if (d.name === 'access_log' && d.args[0] && d.args[0] !== 'off') {
      w.accessLogDirectives.push(d)
    } else if (d.name === 'log_format' && d.args.length >= 2) {
      let rest = d.args.slice(1)
      let escape: LogFormatDef['escape'] = 'default'
      const e = /^escape=(default|json|none)$/.exec(rest[0])
      if (e) {
        escape = e[1] as LogFormatDef['escape']
        rest = rest.slice(1)
      }
      w.logFormats[d.args[0]] = { name: d.args[0], escape, format: rest.join(''), source: ref(d) }
    }
  }
}

function walkLocation(d: NginxDirective, parent: Scope, w: Walk, out: NginxLocation[]): void {
  const body = d.block ?? []
  const scope = scopeOf(body, parent)
  collectLogs(body, w)
  const match = d.name === 'if' ? `if ${d.args.join(' ')}` : d.args.join(' ')
  const pd = body.find((c) => c.name in PASS_DIRECTIVES)
  const pass = pd ? parseProxyPass(pd, scope, w.upstreams) : null
  const exact = /^=\s*(\/\S*)$/.exec(match)
  out.push({
    match, proxyPass: pass?.directive === 'proxy_pass' ? pass : null, pass,
    passSettings: settingsAt(scope, pass ? pass.directive.replace(/_pass$/, '') : 'proxy'),
    exactPath: exact ? exact[1] : null, fastcgiKeepConn: lookup(scope, 'fastcgi_keep_conn')?.args[0] === 'on', settings: settingsAt(scope), ...ref(d),
  })
  for (const c of body) if ((c.name === 'location' || c.name === 'if' || c.name === 'limit_except') && c.block) walkLocation(c, scope, w, out)
}

function serverLabel(s: NginxServer): string {
  return s.serverNames[0] ?? s.listen[0] ?? '*:80'
}

function literalUri(uri: string): string {
  const lit = uri.split('$')[0]
  return lit.startsWith('/') ? lit : '/'
}

function targetsOf(server: NginxServer, loc: NginxLocation, upstreams: Map<string, NginxUpstream>): ProxyTarget[] {
  const pp = loc.pass
  if (!pp || pp.host === null) return []
  const st = loc.passSettings
  // Upstream keep-alive needs HTTP/1.1 without `Connection: close` for proxy_pass, `fastcgi_keep_conn on` for FastCGI; grpc always reuses.
  const clearsConnection = pp.directive === 'proxy_pass' ? st.httpVersion === '1.1' && (st.headers.connection ?? 'close') === '' : pp.directive === 'grpc_pass' || (pp.directive === 'fastcgi_pass' && loc.fastcgiKeepConn)
  const common = {
    scheme: pp.scheme, server: serverLabel(server), location: loc.match,
    timeouts: { connectMs: st.connectTimeoutMs, readMs: st.readTimeoutMs, sendMs: st.sendTimeoutMs },
    httpVersion: st.httpVersion, settings: st, file: loc.file, line: loc.line,
    directive: pp.directive, protocol: pp.protocol, pass: `${pp.directive} ${pp.raw};`, exactPath: loc.exactPath,
  }
  const path = pp.directive === 'proxy_pass' ? literalUri(pp.uri) : loc.exactPath ?? '/'
  const prefix = pp.directive === 'proxy_pass' ? `${pp.scheme}://` : pp.scheme === 'https' ? 'https://' : 'http://'
  const up = upstreams.get(pp.host)
  if (up && pp.port === null && !pp.unix) {
    const reused = up.keepalive !== null && clearsConnection
    const upstreamKeepalive = { connections: up.keepalive, timeoutMs: up.keepaliveTimeoutMs, requests: up.keepaliveRequests }
    return up.servers.map((s) => ({
      ...common,
      url: s.unix ? `${prefix}unix:${s.host}:` : `${prefix}${s.host.includes(':') ? `[${s.host}]` : s.host}:${s.port}${path}`,
      host: s.host, port: s.unix ? 0 : s.port as number, upstream: up.name, socketPath: s.unix ? s.host : null,
      runtimeResolved: pp.runtimeResolved || s.resolve,
      keepalive: reused ? { connections: up.keepalive as number, timeoutMs: up.keepaliveTimeoutMs, requests: up.keepaliveRequests } : null,
      upstreamKeepalive,
    }))
  }
  if (pp.unix) {
    return [{ ...common, url: `${prefix}unix:${pp.host}:`, host: pp.host, port: 0, upstream: null, socketPath: pp.host, runtimeResolved: false, keepalive: null, upstreamKeepalive: null }]
  }
  const port = pp.port ?? (pp.directive === 'proxy_pass' ? (pp.scheme === 'https' ? 443 : 80) : pp.directive === 'grpc_pass' && pp.scheme === 'https' ? 443 : 80)
  return [{
    ...common,
    url: `${prefix}${pp.host.includes(':') ? `[${pp.host}]` : pp.host}:${port}${path}`,
    host: pp.host, port, upstream: null, socketPath: null, runtimeResolved: pp.runtimeResolved, keepalive: null, upstreamKeepalive: null,
  }]
}

/**
 * Builds the doctor model from a parsed configuration. Only the `http` context is
 * read for proxying (`stream` is ignored); `error_log` is read in every context.
 *
 * @throws {NginxParseError} when a value doctor reads is not valid nginx syntax
 *   (e.g. `proxy_read_timeout 10x`), with the file and line of the directive
 */
export function buildNginxModel(tree: NginxConfigTree): NginxModel {
  const w: Walk = {
    upstreams: new Map(),
    logFormats: { combined: { name: 'combined', escape: 'default', format: COMBINED_FORMAT, source: null } },
    errorLogs: [],
    accessLogDirectives: [],
  }
  const main = scopeOf(tree.directives, null)
  collectLogs(tree.directives, w)
  const https = tree.directives.filter((d) => d.name === 'http' && d.block)
  const httpBody = https.flatMap((d) => d.block ?? [])
  const http = scopeOf(httpBody, main)
  collectLogs(httpBody, w)
  for (const d of httpBody) if (d.name === 'upstream' && d.block) {
    const up = parseUpstream(d)
    w.upstreams.set(up.name, up)
  }
  const servers: NginxServer[] = []
  for (const d of httpBody) {
    if (d.name !== 'server' || !d.block) continue
    const scope = scopeOf(d.block, http)
    collectLogs(d.block, w)
    const server: NginxServer = {
      listen: d.block.filter((c) => c.name === 'listen').map((c) => c.args[0]),
      serverNames: d.block.filter((c) => c.name === 'server_name').flatMap((c) => c.args),
      locations: [], settings: settingsAt(scope), ...ref(d),
    }
    if (server.listen.length === 0) server.listen.push('*:80')
    for (const c of d.block) if (c.name === 'location' && c.block) walkLocation(c, scope, w, server.locations)
    servers.push(server)
  }
  const targets = servers.flatMap((s) => s.locations.flatMap((l) => targetsOf(s, l, w.upstreams)))
  const accessLogs: AccessLogRef[] = w.accessLogDirectives.map((d) => {
    const format = d.args[1] && !d.args[1].includes('=') ? d.args[1] : 'combined'
    return { path: d.args[0], format, formatString: w.logFormats[format]?.format ?? null, isFile: isFilePath(d.args[0]), ...ref(d) }
  })
  const user = tree.directives.find((d) => d.name === 'user')?.args[0] ?? null
  return {
    file: tree.file, user, files: tree.files, upstreams: [...w.upstreams.values()], servers, targets,
    httpSettings: settingsAt(http), logFormats: w.logFormats, errorLogs: w.errorLogs, accessLogs,
  }
}

/**
 * `portico convert --nginx`: turns an nginx reverse-proxy configuration into portico.yaml.
 * It reads nginx with the same reader as doctor (includes, globs, `set` variables,
 * inheritance, defaults), writes each Portico key with the nginx file:line it came from,
 * and lists every directive it could not express, with the reason (like `caddy adapt`).
 */
import { dirname, relative, isAbsolute } from 'node:path'
import {
  parseNginxConfig, buildNginxModel, splitHostPort, parseNginxSize, parseNginxTime,
  type NginxConfigTree, type NginxDirective, type NginxModel, type NginxUpstream, type NginxLocation,
  type ProxyPass, type ProxySettings, type SourceRef,
} from '../doctor/nginx/index.ts'
import { formatDuration } from '../config/units.ts'
import { cidrProblem } from '../lib/cidr.ts'
import { map, note, renderYaml, scalar, seq, set, toValue, type YMap, type YNode, type YSeq } from './yaml.ts'

/** Something of the nginx configuration the conversion left out or changed, and why. */
export interface ConversionNote {
  /** Absolute path of the nginx file. */
  file: string
  /** 1-based line of the directive. */
  line: number
  /** The directive as written, shortened (`rewrite ^/old /new`, `location ~ \.php$`). */
  directive: string
  /** Why it is not converted, or how it differs. */
  reason: string
  /**
   * The omission changes where requests go or who may make them (a location, a rewrite, an
   * access rule, a backup server not carried over): the conversion is then incomplete and
   * `portico convert` exits 1. False for differences of tuning, headers or logging.
   */
  routing: boolean
}

/** The outcome of a conversion. */
export interface Conversion {
  /** portico.yaml text, each key commented with the nginx file:line it came from. */
  yaml: string
  /** The config as plain data (what the YAML loads to, before Portico's defaults). */
  config: Record<string, unknown>
  /** Everything left out or changed, in file order. */
  notes: ConversionNote[]
  /** No note changes routing: the Portico config routes every request as nginx does. */
  complete: boolean
}

/** Listener-wide defaults nginx applies when a directive is absent (ngx_http_core_module). */
const NGINX_CLIENT_MAX_BODY = 1024 * 1024

/** Directives of the main context that have nothing to convert (process, event loop and module settings). */
const IGNORED_MAIN = new Set([
  'user', 'worker_processes', 'worker_rlimit_nofile', 'worker_cpu_affinity', 'worker_priority', 'worker_shutdown_timeout',
  'pid', 'error_log', 'events', 'load_module', 'include', 'pcre_jit', 'thread_pool', 'env', 'daemon', 'master_process',
  'timer_resolution', 'lock_file', 'ssl_engine', 'working_directory', 'debug_points', 'google_perftools_profiles',
])

/**
 * Directives of http, server and location that need no equivalent: I/O tuning, logging,
 * MIME types, buffering Portico does its own way. Listed in docs/convert.md.
 */
const IGNORED = new Set([
  'sendfile', 'sendfile_max_chunk', 'tcp_nopush', 'tcp_nodelay', 'types', 'types_hash_max_size', 'types_hash_bucket_size',
  'default_type', 'access_log', 'error_log', 'log_format', 'log_not_found', 'log_subrequest', 'open_log_file_cache',
  'server_tokens', 'server_names_hash_bucket_size', 'server_names_hash_max_size', 'variables_hash_max_size',
  'variables_hash_bucket_size', 'proxy_headers_hash_max_size', 'proxy_headers_hash_bucket_size', 'map_hash_bucket_size',
  'map_hash_max_size', 'charset', 'source_charset', 'reset_timedout_connection', 'aio', 'directio', 'output_buffers',
  'postpone_output', 'client_body_buffer_size', 'client_header_buffer_size', 'client_body_temp_path', 'proxy_temp_path',
  'fastcgi_temp_path', 'uwsgi_temp_path', 'scgi_temp_path', 'proxy_buffers', 'proxy_busy_buffers_size',
  'proxy_max_temp_file_size', 'proxy_temp_file_write_size', 'proxy_http_version',
  'keepalive_requests', 'keepalive_time', 'lingering_close', 'lingering_time', 'lingering_timeout',
  'ssl_session_cache', 'ssl_session_timeout', 'ssl_session_tickets', 'ssl_prefer_server_ciphers',
  'ssl_ecdh_curve', 'ssl_dhparam', 'ssl_stapling_verify', 'ssl_buffer_size', 'ssl_early_data',
  'resolver_timeout', 'zone', 'set', 'satisfy', 'msie_padding', 'msie_refresh', 'server_name_in_redirect',
  'port_in_redirect', 'absolute_redirect', 'underscores_in_headers', 'ignore_invalid_headers', 'merge_slashes',
  'http2_recv_buffer_size', 'http2_chunk_size', 'http2_body_preread_size', 'http2_idle_timeout',
  'ssl_trusted_certificate', 'proxy_ssl_session_reuse', 'proxy_socket_keepalive', 'proxy_ignore_client_abort',
  'etag', 'if_modified_since', 'ssl_session_ticket_key', 'keepalive_disable', 'chunked_transfer_encoding',
])

/** Directives read through the proxy settings, listeners or TLS below: no note when present. */
const HANDLED = new Set([
  'listen', 'server_name', 'server', 'upstream', 'location', 'http2', 'ssl', 'ssl_certificate', 'ssl_certificate_key',
  'ssl_protocols', 'proxy_pass', 'proxy_connect_timeout', 'proxy_read_timeout', 'proxy_send_timeout', 'proxy_next_upstream',
  'proxy_next_upstream_tries', 'proxy_buffer_size', 'client_max_body_size', 'client_header_timeout', 'client_body_timeout',
  'keepalive_timeout', 'send_timeout', 'resolver', 'proxy_set_header', 'proxy_ssl_verify', 'proxy_ssl_trusted_certificate', 'proxy_ssl_name',
  'proxy_ssl_server_name', 'proxy_ssl_certificate', 'proxy_ssl_certificate_key', 'proxy_cache', 'proxy_cache_path',
  'proxy_cache_use_stale', 'proxy_cache_lock', 'proxy_cache_lock_timeout', 'proxy_cache_revalidate', 'large_client_header_buffers',
  'return', 'map', 'proxy_buffering', 'proxy_request_buffering', 'ssl_ciphers', 'ssl_stapling', 'ssl_stapling_file', 'http2_max_concurrent_streams',
  // Read per route (access rules, limits, header rules) or for the whole config (real IP): see routeFilters and realIp.
  'allow', 'deny', 'limit_except', 'limit_req', 'limit_req_zone', 'limit_req_status', 'limit_req_dry_run', 'limit_req_log_level',
  'limit_conn', 'limit_conn_zone', 'limit_conn_status', 'limit_conn_dry_run', 'limit_conn_log_level',
  'set_real_ip_from', 'real_ip_header', 'real_ip_recursive', 'add_header', 'proxy_hide_header', 'proxy_pass_header',
  'more_clear_headers', 'more_set_headers', 'more_clear_input_headers', 'more_set_input_headers',
])

/** {@link HANDLED} where `root` and `index` cannot be reached (or are judged per server). */
const FILES_HANDLED = new Set([...HANDLED, 'root', 'index'])

/** What replaces a directive Portico does not have, when there is a reason worth printing. */
const UNSUPPORTED: Record<string, { reason: string; routing: boolean }> = {
  rewrite: { reason: 'Portico does not rewrite URIs by regular expression (only prefix_rewrite of a matched prefix)', routing: true },
  if: { reason: 'Portico has no conditional blocks', routing: true },
  try_files: { reason: 'Portico does not serve files', routing: true },
  root: { reason: 'Portico does not serve files', routing: true },
  alias: { reason: 'Portico does not serve files', routing: true },
  index: { reason: 'Portico does not serve files', routing: true },
  autoindex: { reason: 'Portico does not serve files', routing: true },
  error_page: { reason: 'Portico answers its own errors with its error page (Proxy-Status, request ID) and relays upstream errors unchanged', routing: false },
  fastcgi_pass: { reason: 'Portico proxies HTTP only (no FastCGI)', routing: true },
  uwsgi_pass: { reason: 'Portico proxies HTTP only (no uwsgi)', routing: true },
  scgi_pass: { reason: 'Portico proxies HTTP only (no SCGI)', routing: true },
  grpc_pass: { reason: 'Portico proxies HTTP/1.1 upstreams only (no gRPC pass)', routing: true },
  memcached_pass: { reason: 'Portico proxies HTTP only', routing: true },
  auth_basic: { reason: 'Portico has no authentication: every client would be let in', routing: true },
  auth_request: { reason: 'Portico has no authentication subrequests: every client would be let in', routing: true },
  limit_rate: { reason: 'Portico does not throttle responses', routing: false },
  proxy_ignore_headers: { reason: 'Portico follows the upstream\'s caching headers (RFC 9111)', routing: false },
  proxy_intercept_errors: { reason: 'Portico relays upstream error responses unchanged', routing: false },
  proxy_cookie_domain: { reason: 'Portico does not rewrite cookies', routing: false },
  proxy_cookie_path: { reason: 'Portico does not rewrite cookies', routing: false },
  proxy_redirect: { reason: 'Portico relays Location and Refresh headers unchanged', routing: false },
  proxy_method: { reason: 'Portico forwards the client\'s method', routing: false },
  proxy_pass_request_body: { reason: 'Portico always forwards the request body', routing: false },
  proxy_pass_request_headers: { reason: 'Portico always forwards the request headers', routing: false },
  proxy_next_upstream_timeout: { reason: 'Portico bounds retries by attempts and its retry budget, not by time', routing: false },
  proxy_cache_valid: { reason: 'Portico stores responses for as long as their Cache-Control/Expires say (RFC 9111), not for a configured time', routing: false },
  proxy_cache_key: { reason: 'Portico keys the cache by method, host and target (RFC 9111)', routing: false },
  proxy_cache_bypass: { reason: 'Portico has no cache bypass conditions', routing: false },
  proxy_no_cache: { reason: 'Portico has no no-store conditions besides the response\'s own headers', routing: false },
  proxy_cache_methods: { reason: 'Portico caches GET and HEAD', routing: false },
  proxy_cache_min_uses: { reason: 'Portico stores a response on its first use', routing: false },
  proxy_cache_background_update: { reason: 'Portico has no background update of stale responses', routing: false },
  proxy_cache_convert_head: { reason: 'Portico keeps HEAD requests as HEAD', routing: false },
  gzip: { reason: 'Portico does not compress responses', routing: false },
  sub_filter: { reason: 'Portico does not rewrite bodies', routing: false },
  ssl_client_certificate: { reason: 'Portico listeners do not verify client certificates yet', routing: true },
  ssl_verify_client: { reason: 'Portico listeners do not verify client certificates yet', routing: true },
  split_clients: { reason: 'Portico has no traffic splitting by key', routing: true },
  geo: { reason: 'Portico has no geo variables', routing: true },
  mirror: { reason: 'Portico does not mirror requests', routing: false },
  stream: { reason: 'Portico proxies HTTP only (no TCP/UDP stream proxying)', routing: true },
  mail: { reason: 'Portico proxies HTTP only (no mail proxying)', routing: true },
  internal: { reason: 'Portico has no internal locations', routing: true },
}

/** Text of a directive for notes, shortened. */
function show(d: NginxDirective): string {
  const text = [d.name, ...d.args].join(' ')
  return text.length > 70 ? `${text.slice(0, 67)}...` : text
}

/** The inheritance chain of a block: its own directives first, then its parents'. */
type Chain = NginxDirective[][]

/** The nearest directive of that name (the last one of the innermost level that has any). */
function nearest(chain: Chain, name: string): NginxDirective | null {
  for (const level of chain) {
    let found: NginxDirective | null = null
    for (const d of level) if (d.name === name) found = d
    if (found) return found
  }
  return null
}

/** One `listen` of a server. */
interface Listen extends SourceRef {
  host: string
  port: number
  ssl: boolean
  http2: boolean
  defaultServer: boolean
}

/** A server block, as the conversion sees it. */
interface ServerInfo extends SourceRef {
  index: number
  directive: NginxDirective
  chain: Chain
  listens: Listen[]
  /** Portico host patterns (`a.example.com`, `*.example.com`); empty means any host. */
  hosts: string[]
  /** First server_name as written (nginx `$server_name`), or ''. */
  primaryName: string
  /** The HTTPS port this server redirects every request to, when it only redirects. */
  redirect: { port: number | true; src: NginxDirective } | null
  /** The `return 4xx` (or 444) of a server that only refuses requests, else null. */
  reject: NginxDirective | null
  ssl: { cert: NginxDirective | null; key: NginxDirective | null; protocols: NginxDirective | null }
  routes: RouteDraft[]
}

/** A route to be written. */
interface RouteDraft {
  server: ServerInfo
  location: NginxDirective
  exact: boolean
  path: string
  proxyPass: ProxyPass
  settings: ProxySettings
  chain: Chain
  /** `location ~` / `~*`: the JavaScript regular expression (case-insensitive part included), else null. */
  regex: string | null
}

/** Upstream as written to YAML, with the key that decides whether two locations can share it. */
interface UpstreamDraft {
  name: string
  node: YMap
  fingerprint: string
}

/** State of one conversion. */
class Converter {
  readonly tree: NginxConfigTree
  readonly model: NginxModel
  readonly notes: ConversionNote[] = []
  readonly base: string
  readonly locations = new Map<string, NginxLocation>()
  readonly upstreamBlocks = new Map<string, { model: NginxUpstream; directive: NginxDirective }>()
  readonly upstreams: UpstreamDraft[] = []
  readonly cacheZones = new Map<string, NginxDirective>()
  /** `add_header Strict-Transport-Security` directives that became a listener's tls.hsts. */
  readonly hstsOk = new Set<NginxDirective>()
  /** Directives of UNSUPPORTED names converted in some forms (limit_conn by client address). */
  readonly converted = new Set<NginxDirective>()
  /** `limit_req_zone` and `limit_conn_zone` directives by zone name. */
  readonly reqZones = new Map<string, NginxDirective>()
  readonly connZones = new Map<string, NginxDirective>()
  /** Routes written with a limit of each zone: nginx counts a zone across locations, Portico per route. */
  readonly zoneRoutes = new Map<NginxDirective, number>()
  /** `limit_conn` on the client address at http level only became `limits.max_requests_per_client_ip`. */
  globalConn = false
  /** Some access rule was converted (the real client address then decides who is let in). */
  accessConverted = false
  #noted = new Set<string>()
  /** {@link directiveAt} answers by `file:line:name`. */
  #at = new Map<string, NginxDirective | null>()

  constructor(tree: NginxConfigTree, model: NginxModel) {
    this.tree = tree
    this.model = model
    this.base = dirname(tree.file)
    for (const s of model.servers) for (const l of s.locations) this.locations.set(`${l.file}:${l.line}:${l.match}`, l)
  }

  /** `file:line` as shown in comments and notes: relative to the main file's directory when inside it. */
  at(r: SourceRef): string {
    const rel = relative(this.base, r.file)
    return `${rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : r.file}:${r.line}`
  }

  /** A comment naming the source of a key: `nginx.conf:12 proxy_read_timeout 5s`. */
  from(d: NginxDirective | null, fallback = 'nginx default'): string {
    return d ? `${this.at(d)} ${show(d)}` : fallback
  }

  /** {@link from} for something known by its file:line (a proxy_pass, an upstream server). */
  fromRef(r: SourceRef): string {
    return this.from(this.directiveAt(r), this.at(r))
  }

  /**
   * Records a note. A bare file:line is shown with the directive written there, unless
   * `whole` says the note is about the configuration as a whole.
   */
  note(r: SourceRef, reason: string, routing: boolean, whole = false): void {
    const d = 'args' in r && 'name' in r ? r as NginxDirective : whole ? r : this.directiveAt(r) ?? r
    const directive = 'args' in d ? show(d as NginxDirective) : ''
    const key = `${d.file}:${d.line}:${reason}`
    if (this.#noted.has(key)) return
    this.#noted.add(key)
    this.notes.push({ file: d.file, line: d.line, directive, reason, routing })
  }

  /** Notes every directive of a level that is neither handled nor ignored. */
  sweep(level: NginxDirective[], handled: ReadonlySet<string> = HANDLED): void {
    for (const d of level) {
      if (handled.has(d.name) || IGNORED.has(d.name)) continue
      // `proxy_redirect off` is what Portico does: Location is relayed unchanged.
      if (d.name === 'proxy_redirect' && d.args[0] === 'off') continue
      // Converted to the listener's tls.hsts and the route's pass_server_header.
      if (d.name === 'add_header' && (d.args[0] ?? '').toLowerCase() === 'strict-transport-security' && this.hstsOk.has(d)) continue
      if (d.name === 'proxy_pass_header' && (d.args[0] ?? '').toLowerCase() === 'server') continue
      if (this.converted.has(d)) continue
      const known = UNSUPPORTED[d.name]
      if (known) this.note(d, known.reason, known.routing)
      else if (/_by_lua/.test(d.name) || d.name.startsWith('lua_') || d.name.startsWith('js_') || d.name.startsWith('perl')) {
        this.note(d, 'Portico runs no embedded scripts (Lua, njs, Perl)', true)
      } else if (d.name.startsWith('fastcgi_') || d.name.startsWith('uwsgi_') || d.name.startsWith('scgi_') || d.name.startsWith('grpc_')) {
        this.note(d, 'Portico proxies HTTP only', false)
      } else this.note(d, 'not converted: Portico has no equivalent', false)
    }
  }

  convert(): Conversion {
    const http = this.tree.directives.filter((d) => d.name === 'http' && d.block)
    for (const d of this.tree.directives) {
      if (d.name === 'http' || IGNORED_MAIN.has(d.name)) continue
      const known = UNSUPPORTED[d.name]
      this.note(d, known ? known.reason : 'not converted: Portico has no equivalent', known?.routing ?? false)
    }
    const httpBody = http.flatMap((d) => d.block ?? [])
    const httpChain: Chain = [httpBody]
    for (const d of httpBody) {
      if (d.name === 'upstream' && d.block) {
        const m = this.model.upstreams.find((u) => u.file === d.file && u.line === d.line)
        if (m) this.upstreamBlocks.set(m.name, { model: m, directive: d })
      } else if (d.name === 'proxy_cache_path') this.cacheZones.set((d.args.find((a) => a.startsWith('keys_zone=')) ?? '').slice(10).split(':')[0], d)
      else if (d.name === 'map') this.convertMap(d)
      else if (d.name === 'limit_req_zone' || d.name === 'limit_conn_zone') {
        const zone = (d.args.find((a) => a.startsWith('zone=')) ?? '').slice(5).split(':')[0]
        ;(d.name === 'limit_req_zone' ? this.reqZones : this.connZones).set(zone, d)
      }
    }
    const root = map()
    this.clientLimit(root, httpBody)
    const servers: ServerInfo[] = []
    let index = 0
    for (const d of httpBody) if (d.name === 'server' && d.block) servers.push(this.readServer(d, index++, httpChain))
    this.sweep(httpBody, FILES_HANDLED)
    if (servers.length === 0) this.note(http[0] ?? { file: this.tree.file, line: 1 }, 'no server block: nothing to convert', true, true)

    const listeners = this.listeners(servers)
    const upstreams = map()
    const routes = this.routes(servers)
    this.sharedZones()
    for (const u of this.upstreams) set(upstreams, u.name, u.node)
    // listeners, routes and upstreams first, whatever was set while reading.
    const early = root.entries.splice(0)
    set(root, 'listeners', listeners)
    set(root, 'routes', routes)
    set(root, 'upstreams', upstreams)
    root.entries.push(...early)
    this.realIp(root, httpBody)
    this.cacheStore(root)
    set(root, 'access_log', map()).entries.push(['format', scalar('json', 'one JSON line a request, with the RFC 9209 cause of each failure')])

    this.notes.sort((a, b) => (a.file === b.file ? a.line - b.line : this.tree.files.indexOf(a.file) - this.tree.files.indexOf(b.file)))
    const complete = !this.notes.some((n) => n.routing)
    const header = [
      `Converted from ${this.tree.file} by portico convert --nginx.`,
      `Each key names the nginx file:line it comes from; "nginx default" marks a value nginx applies when the directive is absent.`,
      complete ? 'Every route of the nginx configuration is converted.'
        : `INCOMPLETE: ${this.notes.filter((n) => n.routing).length} directive(s) that change routing or access could not be converted (listed on standard error and below).`,
      ...this.notes.map((n) => `  ${this.at(n)}: ${n.directive ? `${n.directive}: ` : ''}${n.reason}${n.routing ? ' [routing]' : ''}`),
    ]
    return { yaml: renderYaml(root, header), config: toValue(root) as Record<string, unknown>, notes: this.notes, complete }
  }

  /** `map $http_upgrade $connection_upgrade` is what WebSocket proxying needs, and Portico does it itself. */
  convertMap(d: NginxDirective): void {
    if (d.args[0] === '$http_upgrade') return
    this.note(d, `Portico has no variables: what uses ${d.args[1] ?? 'this map'} is not converted`, false)
  }

  readServer(d: NginxDirective, index: number, parent: Chain): ServerInfo {
    const body = d.block ?? []
    const chain: Chain = [body, ...parent]
    const sslOn = body.some((c) => c.name === 'ssl' && c.args[0] === 'on')
    const http2On = nearest(chain, 'http2')?.args[0] === 'on'
    const listens: Listen[] = []
    for (const l of body.filter((c) => c.name === 'listen')) {
      const parsed = this.parseListen(l, sslOn, http2On)
      if (parsed) listens.push(parsed)
    }
    if (!body.some((c) => c.name === 'listen')) listens.push({ host: '0.0.0.0', port: 80, ssl: sslOn, http2: false, defaultServer: false, file: d.file, line: d.line })
    const hosts: string[] = []
    let primaryName = ''
    for (const n of body.filter((c) => c.name === 'server_name')) {
      for (const name of n.args) {
        if (!primaryName) primaryName = name
        if (name === '_' || name === '') continue
        if (name.startsWith('~')) { this.note(n, `regular-expression server name "${name}" is not converted: Portico matches exact and *. names`, true); continue }
        if (name.startsWith('.')) { hosts.push(name.slice(1), `*${name}`); continue }
        if (/^\*\.[A-Za-z0-9.-]+$/.test(name) || /^[A-Za-z0-9.-]+$/.test(name)) { hosts.push(name.toLowerCase()); continue }
        this.note(n, `server name "${name}" is not converted: Portico matches exact and *.suffix names`, true)
      }
    }
    const server: ServerInfo = {
      index, directive: d, chain, listens, hosts: [...new Set(hosts)], primaryName,
      redirect: this.redirectOf(body), reject: null, routes: [], file: d.file, line: d.line,
      ssl: { cert: nearest(chain, 'ssl_certificate'), key: nearest(chain, 'ssl_certificate_key'), protocols: nearest(chain, 'ssl_protocols') },
    }
    // Strict-Transport-Security of a TLS server (or of http, for it) becomes the listener's tls.hsts.
    if (listens.some((l) => l.ssl)) {
      for (const lvl of chain) for (const c of lvl) if (c.name === 'add_header' && (c.args[0] ?? '').toLowerCase() === 'strict-transport-security') this.hstsOk.add(c)
    }
    if (server.redirect) {
      for (const c of body) {
        if (c.name === 'location' && c.block && !c.block.includes(server.redirect.src)) {
          this.note(c, 'nginx serves this location itself on a port that otherwise redirects to https; Portico redirects every request of the listener', true)
        }
      }
      return server
    }
    const ret = body.find((c) => c.name === 'return')
    // `return 444` / `return 404` of a server that proxies nothing (a catch-all refusing
    // unknown names): Portico's 404 for a request no route matches does the same.
    if (ret && /^4\d\d$/.test(ret.args[0] ?? '') && !body.some((c) => c.name === 'location')) server.reject = ret
    else if (ret) this.note(ret, 'Portico does not answer requests itself (only redirect_to_https of a whole plain listener)', true)
    // `root` and `index` only serve requests no location proxies: with a `location /` that
    // proxies there are none (a location that serves files is noted on its own).
    const rootProxies = body.some((c) => c.name === 'location' && c.args.length === 1 && c.args[0] === '/' && (c.block ?? []).some((x) => x.name === 'proxy_pass'))
    this.sweep(body, rootProxies ? FILES_HANDLED : HANDLED)
    if (!rootProxies && !server.reject) {
      for (const lvl of parent) for (const c of lvl) if (c.name === 'root' || c.name === 'index') this.note(c, UNSUPPORTED[c.name].reason, true)
    }
    for (const c of body) if (c.name === 'location' && c.block) this.readLocation(server, c, chain, null)
    return server
  }

  parseListen(l: NginxDirective, sslOn: boolean, http2On: boolean): Listen | null {
    const addr = l.args[0] ?? ''
    if (addr.startsWith('unix:')) { this.note(l, 'Portico listens on TCP addresses only (no unix socket)', true); return null }
    let host = '0.0.0.0'
    let port = 80
    if (/^\d+$/.test(addr)) port = Number(addr)
    else {
      const hp = splitHostPort(addr)
      host = hp.host === '*' ? '0.0.0.0' : hp.host
      port = hp.port ?? 80
    }
    const params = l.args.slice(1)
    for (const p of params) {
      if (p === 'proxy_protocol') this.note(l, 'Portico does not read the PROXY protocol header', true)
      else if (p === 'quic' || p === 'http3') this.note(l, 'Portico does not speak HTTP/3', false)
    }
    return {
      host, port, ssl: sslOn || params.includes('ssl'), http2: http2On || params.includes('http2'),
      defaultServer: params.includes('default_server') || params.includes('default'), file: l.file, line: l.line,
    }
  }

  /**
   * A server that sends every request to https (`return 301 https://$host$request_uri`,
   * at server level or as the only thing of `location /`): the port it redirects to. Other
   * locations that do not proxy (the ACME challenge files of certbot, typically) do not
   * stop it; they are noted, since Portico redirects them too.
   */
  redirectOf(body: NginxDirective[]): ServerInfo['redirect'] {
    const significant = body.filter((c) => !['listen', 'server_name', 'access_log', 'error_log', 'location', 'return', 'root', 'index'].includes(c.name) && !IGNORED.has(c.name))
    let ret = body.find((c) => c.name === 'return') ?? null
    const locations = body.filter((c) => c.name === 'location')
    const root = locations.find((l) => l.args.join(' ') === '/')
    if (!ret && root) {
      const inner = root.block ?? []
      if (inner.length === 1 && inner[0].name === 'return') ret = inner[0]
    }
    const proxies = (ds: NginxDirective[]): boolean => ds.some((c) => c.name === 'proxy_pass' || (c.block !== null && proxies(c.block)))
    if (!ret || significant.length > 0 || proxies(locations)) return null
    const code = ret.args.length === 2 ? ret.args[0] : ''
    const url = ret.args.length === 2 ? ret.args[1] : ''
    if (!['301', '302', '307', '308'].includes(code)) return null
    const m = /^https:\/\/(\$host|\$server_name|\$http_host|[A-Za-z0-9.-]+)(?::(\d+))?(\$request_uri|\$uri\$is_args\$args|\$uri)?$/.exec(url)
    if (!m || !m[3]) return null
    const port = m[2] ? Number(m[2]) : 443
    return { port: port === 443 ? true : port, src: ret }
  }

  readLocation(server: ServerInfo, d: NginxDirective, parent: Chain, outer: NginxDirective | null): void {
    const body = d.block ?? []
    const chain: Chain = [body, ...parent]
    const [a0, a1] = d.args
    const modifier = d.args.length === 2 ? a0 : ''
    const uri = d.args.length === 2 ? a1 : a0 ?? ''
    this.sweep(body)
    for (const c of body) {
      if (c.name === 'return') this.note(c, 'Portico does not answer requests itself: requests of this location would be proxied or get 404', true)
    }
    const nested = body.filter((c) => c.name === 'location' && c.block)
    const pp = this.locations.get(`${d.file}:${d.line}:${d.args.join(' ')}`)
    const isRegex = modifier === '~' || modifier === '~*'
    let regex: string | null = null
    if (isRegex) {
      const js = pcreToJs(uri, modifier === '~*')
      // nginx looks for a nested regex location inside the matched prefix location before
      // the top-level ones: Portico has one level of routes.
      if (outer !== null) this.note(d, 'a regular-expression location nested in another location is not converted: nginx checks it before the server\'s own regular expressions, which Portico routes cannot say', true)
      else if (typeof js !== 'string') this.note(d, `regular expression not converted: ${js.problem}`, true)
      else regex = js
    }
    if (isRegex && regex === null) {
      // noted above
    } else if (uri.startsWith('@')) {
      this.note(d, 'named locations are reached only through error_page/try_files, which Portico does not have', true)
    } else if (modifier !== '' && modifier !== '=' && modifier !== '^~' && !isRegex) {
      this.note(d, `unknown location modifier "${modifier}"`, true)
    } else if (pp?.proxyPass) {
      const p = pp.proxyPass
      if (p.unix && p.scheme === 'https') this.note(p, 'Portico speaks plain HTTP over unix sockets (no TLS)', true)
      else if (p.host === null) {
        this.note(p, 'proxy_pass with a variable address is not converted: Portico routes to named upstreams', true)
      } else if (p.runtimeResolved && p.uri !== '' && p.uri !== '$request_uri') {
        this.note(p, 'proxy_pass with variables and a URI part replaces the whole request URI per request: not converted', true)
      } else {
        server.routes.push({ server, location: d, exact: modifier === '=', path: uri, proxyPass: p, settings: pp.settings, chain, regex })
      }
    } else if (nested.length === 0 && !body.some((c) => c.name === 'return' || UNSUPPORTED[c.name]?.routing)) {
      this.note(d, 'location without proxy_pass: nginx serves files here; Portico only proxies', true)
    }
    for (const c of nested) this.readLocation(server, c, chain, d)
  }

  listeners(servers: ServerInfo[]): YSeq {
    interface Socket { host: string; port: number; listens: Listen[]; servers: ServerInfo[] }
    const sockets = new Map<string, Socket>()
    for (const s of servers) {
      for (const l of s.listens) {
        const key = `${l.host}|${l.port}`
        const sock = sockets.get(key) ?? { host: l.host, port: l.port, listens: [], servers: [] }
        sock.listens.push(l)
        if (!sock.servers.includes(s)) sock.servers.push(s)
        sockets.set(key, sock)
      }
    }
    // `listen 80` and `listen [::]:80` together are one dual-stack listener.
    for (const [key, sock] of sockets) {
      if (sock.host !== '::' && sock.host !== '[::]') continue
      const v4 = sockets.get(`0.0.0.0|${sock.port}`)
      if (!v4) continue
      v4.host = '::'
      v4.listens.push(...sock.listens)
      for (const s of sock.servers) if (!v4.servers.includes(s)) v4.servers.push(s)
      sockets.delete(key)
    }
    const out = seq()
    for (const sock of sockets.values()) {
      const l = map()
      const host = sock.host.includes(':') ? `[${sock.host.replace(/^\[|\]$/g, '')}]` : sock.host
      set(l, 'address', scalar(`${host}:${sock.port}`, sock.listens.map((x) => this.from(this.directiveAt(x) ?? null, this.at(x))).join('; ')))
      const ssl = sock.listens.some((x) => x.ssl)
      const def = sock.servers.find((s) => s.listens.some((x) => x.port === sock.port && x.defaultServer)) ?? sock.servers[0]
      const redirects = sock.servers.filter((s) => s.redirect)
      if (!ssl && redirects.length > 0 && redirects.length === sock.servers.length) {
        const r = redirects[0].redirect as NonNullable<ServerInfo['redirect']>
        set(l, 'redirect_to_https', scalar(r.port, `${this.from(r.src)} (Portico answers 308, which keeps the method)`))
      } else {
        for (const s of redirects) this.note(s.redirect?.src ?? s, `this server redirects to https but shares its port with servers that proxy: Portico redirects a whole listener or none`, true)
        this.listenerLimits(l, sock.servers)
      }
      if (ssl) this.listenerTls(l, sock.servers, def, sock.listens)
      else if (sock.listens.some((x) => x.http2)) this.note(this.directiveAt(sock.listens[0]) ?? sock.listens[0], 'HTTP/2 without TLS (h2c) is not offered by Portico: clients use HTTP/1.1 on this port', false)
      out.items.push(l)
    }
    return out
  }

  /** The directive written at a file:line (the innermost one, so `location / { proxy_pass ...; }` on one line gives proxy_pass). */
  directiveAt(r: SourceRef): NginxDirective | null {
    // A proxy_pass (or other pass) is found by its name among the directives of its line.
    const name = 'directive' in r && typeof r.directive === 'string' ? r.directive : null
    // Every key's comment asks for its directive: walk the tree once per file:line, not once per key.
    const key = `${r.file}:${r.line}:${name ?? ''}`
    const known = this.#at.get(key)
    if (known !== undefined) return known
    const find = (ds: NginxDirective[]): NginxDirective | null => {
      let hit: NginxDirective | null = null
      for (const d of ds) {
        if (d.block) { const f = find(d.block); if (f) return f }
        if (d.file === r.file && d.line === r.line && (name === null || d.name === name)) hit ??= d
      }
      return hit
    }
    const hit = find(this.tree.directives)
    this.#at.set(key, hit)
    return hit
  }

  /** client_max_body_size, client_header_timeout, client_body_timeout, send_timeout, keepalive_timeout of the servers of one socket. */
  listenerLimits(l: YMap, servers: ServerInfo[]): void {
    const pick = (name: string, parse: (t: string) => number): { value: number; d: NginxDirective | null } | null => {
      const found = servers.map((s) => nearest(s.chain, name))
      const values = found.map((d) => (d ? parse(d.args[0] ?? '') : NaN))
      const d = found.find((x) => x) ?? null
      if (!d) return null
      const set = new Set(values.map((v) => (Number.isNaN(v) ? 'default' : v)))
      if (set.size > 1) this.note(d, `servers sharing this port set different ${name}: Portico sets it per listener; the largest is used`, false)
      return { value: Math.max(...values.filter((v) => !Number.isNaN(v))), d }
    }
    const timeouts = map()
    const t = (key: string, name: string) => {
      const v = pick(name, (x) => parseNginxTime(x))
      if (v) set(timeouts, key, scalar(formatDuration(v.value), this.from(v.d)))
    }
    t('header_read', 'client_header_timeout')
    t('body_idle', 'client_body_timeout')
    t('send', 'send_timeout')
    const ka = pick('keepalive_timeout', (x) => parseNginxTime(x))
    if (ka) {
      if (ka.value === 0) this.note(ka.d as NginxDirective, 'keepalive_timeout 0 closes client connections after each request; Portico keeps them open for the default time', false)
      else set(timeouts, 'keepalive', scalar(formatDuration(ka.value), this.from(ka.d)))
    }
    if (timeouts.entries.length > 0) set(l, 'timeouts', timeouts)
    set(l, 'encoded_slashes', scalar('keep', 'nginx routes a %2F as a slash and forwards it as the client sent it'))
    const body = pick('client_max_body_size', (x) => parseNginxSize(x))
    if (!body) set(l, 'max_request_body_size', scalar(formatSize(NGINX_CLIENT_MAX_BODY), 'nginx default client_max_body_size 1m'))
    else if (body.value > 0) set(l, 'max_request_body_size', scalar(formatSize(body.value), this.from(body.d)))
    // Locations that allow another body size than their server.
    for (const s of servers) for (const r of s.routes) {
      const own = r.chain[0].find((c) => c.name === 'client_max_body_size')
      if (own && parseNginxSize(own.args[0] ?? '') !== (body?.value ?? NGINX_CLIENT_MAX_BODY)) {
        this.note(own, 'Portico limits request bodies per listener: the listener\'s limit applies to this location too', false)
      }
    }
    const lchb = pick('large_client_header_buffers', (x) => parseNginxSize(x))
    if (lchb) {
      const d = lchb.d as NginxDirective
      const sizeEach = parseNginxSize(d.args[1] ?? '8k')
      set(l, 'max_header_size', scalar(formatSize(sizeEach * Number(d.args[0] ?? 4)), `${this.from(d)} (Portico limits the whole header section)`))
    }
  }

  listenerTls(l: YMap, servers: ServerInfo[], def: ServerInfo, listens: Listen[]): void {
    const tls = map()
    const certs = seq()
    const seen = new Set<string>()
    const ordered = [def, ...servers.filter((s) => s !== def)]
    let protocols: NginxDirective | null = null
    for (const s of ordered) {
      if (!s.listens.some((x) => x.ssl)) continue
      const { cert, key } = s.ssl
      if (!cert || !key) { this.note(s, 'ssl server without ssl_certificate and ssl_certificate_key', true); continue }
      if (cert.args.some((a) => a.includes('$')) || key.args.some((a) => a.includes('$'))) { this.note(cert, 'certificate paths with variables are not converted', true); continue }
      const all = levelWith(s.chain, ['ssl_certificate'])
      if (all.length > 1) this.note(all[1], 'Portico serves one certificate a name: the last ssl_certificate of the level is used', false)
      if (seen.has(cert.args[0])) continue
      seen.add(cert.args[0])
      const c = map(s === def ? 'the default certificate (default server of this port)' : undefined)
      set(c, 'cert', scalar(cert.args[0], this.from(cert)))
      set(c, 'key', scalar(key.args[0], this.from(key)))
      const stapleFile = nearest(s.chain, 'ssl_stapling_file')
      const stapling = nearest(s.chain, 'ssl_stapling')
      if (stapleFile) set(c, 'ocsp_response', scalar(stapleFile.args[0], this.from(stapleFile)))
      else if (stapling?.args[0] === 'on') this.note(stapling, 'Portico staples an OCSP response file (ocsp_response) and never asks the responder itself', false)
      certs.items.push(c)
      protocols ??= s.ssl.protocols
    }
    if (certs.items.length === 0) return
    set(tls, 'certificates', certs)
    const p = protocols?.args ?? ['TLSv1.2', 'TLSv1.3']
    if (p.some((x) => x === 'TLSv1' || x === 'TLSv1.1' || x === 'SSLv3' || x === 'SSLv2')) {
      if (protocols) this.note(protocols, 'Portico accepts TLSv1.2 and TLSv1.3 only', false)
    }
    set(tls, 'min_version', scalar(p.includes('TLSv1.2') || !p.includes('TLSv1.3') ? 'TLSv1.2' : 'TLSv1.3', this.from(protocols, 'nginx default ssl_protocols TLSv1.2 TLSv1.3')))
    const h2 = listens.some((x) => x.http2)
    const h2From = h2 ? `${this.fromRef(listens.find((x) => x.http2) as Listen)} (http2)` : 'no http2 on this port in nginx'
    set(tls, 'alpn', seq(h2 ? [scalar('h2'), scalar('http/1.1')] : [scalar('http/1.1')], h2From))
    const ciphers = nearest(def.chain, 'ssl_ciphers')
    if (ciphers) set(tls, 'ciphers', scalar(ciphers.args[0], this.from(ciphers)))
    this.hsts(tls, ordered.filter((s) => s.listens.some((x) => x.ssl)))
    set(l, 'tls', tls)
    const streams = nearest(def.chain, 'http2_max_concurrent_streams')
    if (streams && h2) set(l, 'http2', map()).entries.push(['max_concurrent_streams', scalar(Number(streams.args[0]), this.from(streams))])
  }

  /**
   * `add_header Strict-Transport-Security "max-age=N; includeSubDomains; preload"` of the
   * TLS servers of a port → `tls.hsts` (Portico sets it per listener). add_header is
   * inherited whole from the nearest level that has any.
   */
  hsts(tls: YMap, servers: ServerInfo[]): void {
    const found = servers.map((s) => {
      return levelWith(s.chain, ['add_header']).find((c) => (c.args[0] ?? '').toLowerCase() === 'strict-transport-security') ?? null
    })
    const d = found.find((x) => x !== null)
    if (!d) return
    const m = /max-age=(\d+)/i.exec(d.args[1] ?? '')
    if (!m) return
    const h = set(tls, 'hsts', map(this.from(d)))
    set(h, 'max_age', scalar(formatDuration(Number(m[1]) * 1000)))
    if (/includesubdomains/i.test(d.args[1] ?? '')) set(h, 'include_subdomains', scalar(true))
    if (/preload/i.test(d.args[1] ?? '')) set(h, 'preload', scalar(true))
    if (found.some((x) => x === null)) this.note(d, 'Portico sends Strict-Transport-Security from every server of this port, not only from the ones that add it', false)
    if (!d.args.includes('always')) this.note(d, 'Portico adds Strict-Transport-Security to every response, as nginx does with "always"', false)
  }

  routes(servers: ServerInfo[]): YSeq {
    const out = seq()
    const names = new Set<string>()
    const proxying = servers.filter((s) => s.routes.length > 0)
    // nginx sends a request whose Host no server_name matches to the default server of the
    // port (`default_server`, else the first server listening there). When that server
    // proxies, its routes are written once more without a host, which Portico tries last.
    const defaults = new Set<ServerInfo>()
    for (const port of new Set(servers.flatMap((s) => s.listens.map((l) => l.port)))) {
      const on = servers.filter((s) => !s.redirect && s.listens.some((l) => l.port === port))
      const def = on.find((s) => s.listens.some((l) => l.port === port && l.defaultServer)) ?? on[0]
      if (def) defaults.add(def)
    }
    const anyHost = proxying.find((s) => s.hosts.length === 0) ?? proxying.find((s) => defaults.has(s)) ?? null
    for (const s of servers) {
      if (s.reject && defaults.has(s)) {
        this.note(s.reject, `requests whose Host no server_name matches get 404 destination_not_found from Portico${s.reject.args[0] === '444' ? ' (nginx closes the connection without an answer)' : ''}`, false)
      } else if (s.reject) {
        this.note(s.reject, `Portico answers requests for these names with 404 destination_not_found (no route has them)`, false)
      }
    }
    const ports = new Set(proxying.map((s) => s.listens.map((l) => l.port).sort().join(',')))
    if (ports.size > 1 && proxying.length > 1) {
      this.note(proxying[1].directive, 'servers that proxy listen on different ports: Portico routes are shared by all listeners, so each server\'s routes answer on every port', false)
    }
    // A lone proxying server that is the default gets every request in nginx, whatever its server_name.
    const lone = proxying.length === 1 && anyHost === proxying[0]
    for (const s of proxying) {
      const hosts: Array<string | undefined> = s.hosts.length > 0 && !lone ? [...s.hosts] : [undefined]
      if (s === anyHost && s.hosts.length > 0 && !lone) hosts.push(undefined)
      for (const r of s.routes) {
        const upstream = this.upstreamFor(r)
        if (upstream === null) continue
        for (const host of hosts) {
          const route = map()
          let name = `${host ?? (s.hosts.length > 0 && !lone ? `default:${s.hosts[0]}` : s.hosts[0] ?? 'any')}${r.exact ? '=' : r.regex !== null ? `${r.location.args[0]}` : ''}${r.path}`
          for (let i = 2; names.has(name); i++) name = `${name.replace(/#\d+$/, '')}#${i}`
          names.add(name)
          const why = host !== undefined || s.hosts.length === 0 ? undefined
            : lone ? `${this.at(s)}: the only server that proxies, so nginx sends it every Host` : 'nginx default server: requests whose Host no server_name matches'
          set(route, 'name', scalar(name, why))
          const match = set(route, 'match', map())
          if (host !== undefined) set(match, 'host', scalar(host, this.from(s.directive.block?.find((c) => c.name === 'server_name') ?? null)))
          if (r.regex !== null) {
            const stop = stopPrefixes(s)
            set(match, 'path_regex', scalar(excludePrefixes(r.regex, stop), `${this.from(r.location)}${stop.length > 0 ? ` (not under the ^~ prefix${stop.length > 1 ? 'es' : ''} ${stop.map((x) => x.path).join(', ')}, whose requests nginx never checks against regular expressions)` : ''}`))
          } else set(match, r.exact ? 'path' : 'path_prefix', scalar(r.path, `${this.from(r.location)}${r.exact || r.path === '/' || s.routes.some((o) => o.path === r.path.replace(/\/+$/, '')) ? '' : prefixDifference(r.path)}`))
          set(route, 'upstream', scalar(upstream, this.fromRef(r.proxyPass)))
          this.hostHeader(route, r)
          this.upgradesAndServer(route, r)
          this.rewrite(route, r)
          this.routeCache(route, r)
          this.buffering(route, r)
          this.routeFilters(route, r)
          out.items.push(route)
        }
      }
    }
    if (out.items.length === 0) {
      this.note({ file: this.tree.file, line: 1 }, 'no location with proxy_pass was converted: a Portico config needs at least one route', true, true)
    }
    return out
  }

  hostHeader(route: YMap, r: RouteDraft): void {
    const value = r.settings.headers.host ?? '$proxy_host'
    // proxy_set_header is inherited whole from the nearest level that has any.
    const hostDirective = levelWith(r.chain, ['proxy_set_header']).find((c) => (c.args[0] ?? '').toLowerCase() === 'host') ?? null
    const from = this.from(hostDirective, 'nginx default proxy_set_header Host $proxy_host')
    const p = r.proxyPass
    if (value === '$host' || value === '$http_host') {
      set(route, 'preserve_host', scalar(true, from))
    } else if (value === '$proxy_host') {
      // nginx sends the proxy_pass host as written: the upstream block's name, or host[:port].
      const port = p.port !== null && p.port !== (p.scheme === 'https' ? 443 : 80) ? `:${p.port}` : ''
      const proxyHost = `${p.host}${port}`
      set(route, 'preserve_host', scalar(false, from))
      // Over a unix socket nginx sends `localhost`, as Portico does.
      if (!p.unix && !(p.upstream === null && p.port !== null)) set(route, 'host_rewrite', scalar(proxyHost, `$proxy_host of ${p.raw}`))
    } else if (value === '$server_name' && r.server.primaryName) {
      set(route, 'host_rewrite', scalar(r.server.primaryName, from))
    } else if (!value.includes('$') && /^[A-Za-z0-9_.:-]+$/.test(value)) {
      set(route, 'host_rewrite', scalar(value, from))
    } else {
      set(route, 'preserve_host', scalar(true, from))
      if (hostDirective) this.note(hostDirective, `Host "${value}" is not converted: Portico sends the client's Host or a fixed one`, false)
    }
  }

  /** WebSocket tunnelling (nginx needs `proxy_set_header Upgrade $http_upgrade`) and `proxy_pass_header Server`. */
  upgradesAndServer(route: YMap, r: RouteDraft): void {
    const upgrade = levelWith(r.chain, ['proxy_set_header']).find((c) => (c.args[0] ?? '').toLowerCase() === 'upgrade' && c.args[1] === '$http_upgrade')
    if (!upgrade) set(route, 'upgrades', seq([], 'no proxy_set_header Upgrade $http_upgrade: nginx does not tunnel WebSocket here'))
    const server = levelWith(r.chain, ['proxy_pass_header']).find((c) => (c.args[0] ?? '').toLowerCase() === 'server')
    if (server) set(route, 'pass_server_header', scalar(true, this.from(server)))
  }

  rewrite(route: YMap, r: RouteDraft): void {
    const p = r.proxyPass
    // `http://unix:/run/app.sock:/uri`: the URI part follows the socket path and a colon.
    const u = p.unix ? /^https?:\/\/unix:[^:]*:?(.*)$/i.exec(p.raw)?.[1] ?? '' : p.uri
    const src = this.fromRef(p)
    if (u === '' || u === '$request_uri') return
    if (u.includes('$')) { this.note(p, `the URI part "${u}" of proxy_pass has variables: the path is forwarded unchanged`, true); return }
    if (r.exact) {
      if (u !== r.path) set(route, 'prefix_rewrite', scalar(u, src))
      return
    }
    if (u === r.path) return
    const lSlash = r.path.endsWith('/')
    const uSlash = u.endsWith('/')
    if (u === '/' && (lSlash || r.path === '/')) { set(route, 'strip_prefix', scalar(true, src)); return }
    set(route, u === '/' ? 'strip_prefix' : 'prefix_rewrite', scalar(u === '/' ? true : u, src))
    if (lSlash !== uSlash) {
      this.note(p, `nginx replaces "${r.path}" by "${u}" literally (giving ${lSlash ? `"${u}x" for "${r.path}x"` : `"${u}/x" for "${r.path}/x"`}); Portico keeps one "/" between them`, false)
    }
    if (r.chain[0].every((c) => c.name !== 'proxy_redirect')) {
      // nginx rewrites Location headers of such a location (proxy_redirect default); Portico relays them.
      this.note(p, 'nginx rewrites Location headers of a proxy_pass with a URI (proxy_redirect default); Portico relays them unchanged', false)
    }
  }

  /** `proxy_buffering off` / `proxy_request_buffering off` (streaming locations) → the route's buffering. */
  buffering(route: YMap, r: RouteDraft): void {
    const response = nearest(r.chain, 'proxy_buffering')
    const request = nearest(r.chain, 'proxy_request_buffering')
    if (response?.args[0] !== 'off' && request?.args[0] !== 'off') return
    const b = set(route, 'buffering', map())
    if (request?.args[0] === 'off') set(b, 'request', scalar(false, this.from(request)))
    if (response?.args[0] === 'off') set(b, 'response', scalar(false, this.from(response)))
  }

  /** Access rules, rate limits, limit_conn and header rules of a route. */
  routeFilters(route: YMap, r: RouteDraft): void {
    this.accessRules(route, r)
    this.rateLimits(route, r)
    this.limitConn(route, r)
    this.headerRules(route, r)
  }

  /**
   * `allow`/`deny` → `routes[].access`, in order (nginx ngx_http_access_module: first match
   * decides, the nearest level with any rule replaces the inherited ones, so each route
   * gets the rules of its location, else its server's, else http's). `limit_except M { … }`:
   * methods M (GET implies HEAD) keep the location's rules; the others get the block's.
   */
  accessRules(route: YMap, r: RouteDraft): void {
    const level = levelWith(r.chain, ['allow', 'deny'])
    const lim = r.chain[0].find((c) => c.name === 'limit_except' && c.block) ?? null
    const rules = seq()
    if (lim) {
      const methods = [...new Set(lim.args.map((m) => m.toUpperCase()).flatMap((m) => (m === 'GET' ? ['GET', 'HEAD'] : [m])))]
      const own: NginxDirective[] = []
      for (const c of lim.block ?? []) {
        if (c.name === 'allow' || c.name === 'deny') own.push(c)
        else this.note(c, `inside limit_except: not converted (${UNSUPPORTED[c.name]?.reason ?? 'Portico applies only allow and deny per method'})`, c.name.startsWith('auth') || UNSUPPORTED[c.name]?.routing === true)
      }
      for (const d of level) this.pushRule(rules, d, methods)
      const pass = map(`${this.from(lim)}: the methods it lists get the location's rules only`)
      set(pass, 'allow', scalar('all'))
      set(pass, 'methods', seq(methods.map((m) => scalar(m))))
      rules.items.push(pass)
      // A limit_except without rules of its own inherits the location's.
      for (const d of own.length > 0 ? own : level) this.pushRule(rules, d)
      if (own.length === 0 && level.length === 0) rules.items.length = 0
    } else for (const d of level) this.pushRule(rules, d)
    if (rules.items.length === 0) return
    this.accessConverted = true
    set(route, 'access', rules)
  }

  pushRule(rules: YSeq, d: NginxDirective, methods?: string[]): void {
    const a = d.args[0] ?? ''
    if (a.startsWith('unix:')) { this.note(d, 'a rule for unix-socket clients: Portico listens on TCP only', false); return }
    const range = a === 'all' ? 'all' : networkOf(a)
    if (range === null) { this.note(d, `address "${a}" is not converted`, true); return }
    const rule = map(`${this.from(d)}${range !== a ? ` (the network of ${a})` : ''}`)
    set(rule, d.name, scalar(range))
    if (methods) set(rule, 'methods', seq(methods.map((m) => scalar(m))))
    rules.items.push(rule)
  }

  /**
   * What a `limit_req_zone`/`limit_conn_zone` key becomes: the client address, a request
   * header (`$http_x_api_key` → `X-Api-Key`), or the route (`$server_name`, counted per
   * route: {@link sharedZones} notes when that differs). Null when not expressible (noted).
   */
  limitKey(zone: NginxDirective): YNode | null {
    const k = zone.args[0] ?? ''
    if (k === '$binary_remote_addr' || k === '$remote_addr') return scalar('client_ip', `${this.at(zone)} key ${k}`)
    if (k === '$server_name') return scalar('route', `${this.at(zone)} key $server_name: one count for the whole route`)
    const h = /^\$http_([a-z0-9_]+)$/i.exec(k)
    if (h) {
      const m = map(`${this.at(zone)} key ${k}; requests without the field are not counted, as nginx does not count an empty key`)
      set(m, 'header', scalar(h[1].split('_').map((w) => w.charAt(0).toUpperCase() + w.slice(1).toLowerCase()).join('-')))
      return m
    }
    this.note(zone, `key ${k} is not converted: Portico counts by the client address, the route or one request header`, false)
    return null
  }

  /** `limit_req zone=z burst=B nodelay` (nearest level with any) → `routes[].rate_limits`. */
  rateLimits(route: YMap, r: RouteDraft): void {
    const level = levelWith(r.chain, ['limit_req'])
    if (level.length === 0) return
    const dry = nearest(r.chain, 'limit_req_dry_run')
    if (dry?.args[0] === 'on') { this.note(dry, 'dry run: nginx only counts and logs; the limits of this location are not converted', false); return }
    const out = seq()
    for (const d of level) {
      const arg = (k: string) => d.args.find((a) => a.startsWith(`${k}=`))?.slice(k.length + 1)
      const zoneName = arg('zone') ?? ''
      const zone = this.reqZones.get(zoneName)
      if (!zone) { this.note(d, `no limit_req_zone ${zoneName} at http level`, false); continue }
      const rate = zone.args.find((a) => a.startsWith('rate='))?.slice(5) ?? ''
      if (!/^\d+(\.\d+)?r\/(s|m)$/.test(rate)) { this.note(zone, `rate "${rate}" is not converted`, false); continue }
      const key = this.limitKey(zone)
      if (key === null) continue
      const burst = Number(arg('burst') ?? 0)
      const nodelay = d.args.includes('nodelay')
      const delay = arg('delay')
      const l = map(this.from(d))
      set(l, 'name', scalar(zoneName.replace(/[^A-Za-z0-9_.-]/g, '_') || 'limit'))
      set(l, 'key', key)
      set(l, 'rate', scalar(rate, this.from(zone)))
      if (burst > 0) set(l, 'burst', scalar(burst, nodelay ? 'nodelay: served at once, as Portico does' : 'nginx delays these to the rate; Portico serves them at once'))
      if (burst > 0 && !nodelay && delay === undefined) this.note(d, `without nodelay nginx delays the ${burst} requests over the rate until their turn; Portico serves them at once (the same requests are admitted, sooner)`, false)
      if (delay !== undefined) this.note(d, `delay=${delay}: nginx serves ${delay} requests at once and delays the rest of the burst; Portico serves the whole burst at once`, false)
      out.items.push(l)
      this.zoneRoutes.set(zone, (this.zoneRoutes.get(zone) ?? 0) + 1)
    }
    if (out.items.length === 0) return
    set(route, 'rate_limits', out)
    this.refusalStatus(r, 'limit_req_status', level[0])
  }

  /** Portico refuses over a limit with 429; nginx with limit_req_status/limit_conn_status, 503 by default. */
  refusalStatus(r: RouteDraft, name: string, use: NginxDirective): void {
    const st = nearest(r.chain, name)
    const code = Number(st?.args[0] ?? 503)
    if (code !== 429) this.note(st ?? use, `Portico refuses requests over the limit with 429 Too Many Requests (and Retry-After); nginx answers ${code}${st ? '' : ` (the default of ${name})`}`, false)
  }

  /** `limit_conn zone N` (nearest level with any) → `routes[].limit_conn`; Portico has one a route. */
  limitConn(route: YMap, r: RouteDraft): void {
    if (this.globalConn) return
    const level = levelWith(r.chain, ['limit_conn'])
    let done = false
    for (const d of level) {
      const zone = this.connZones.get(d.args[0] ?? '')
      const max = Number(d.args[1])
      if (!zone) { this.note(d, `no limit_conn_zone ${d.args[0]} at http level`, false); continue }
      if (!(max >= 1)) { this.note(d, 'a limit of 0 is not converted', false); continue }
      if (done) { this.note(d, 'Portico has one limit_conn a route: only the first of this level is converted', false); continue }
      const key = this.limitKey(zone)
      if (key === null) continue
      const m = set(route, 'limit_conn', map(this.from(d)))
      set(m, 'key', key)
      set(m, 'max', scalar(max))
      this.zoneRoutes.set(zone, (this.zoneRoutes.get(zone) ?? 0) + 1)
      this.refusalStatus(r, 'limit_conn_status', d)
      done = true
    }
  }

  /** A zone used by several Portico routes: nginx counts it once for all of them. */
  sharedZones(): void {
    for (const [zone, n] of this.zoneRoutes) {
      if (n > 1) this.note(zone, `nginx counts one zone across every location that uses it; Portico counts each of the ${n} routes that use it apart`, false)
    }
  }

  /**
   * Header rules of a route: `proxy_set_header` (literal values; `""` removes the field),
   * `more_set_input_headers`/`more_clear_input_headers` → `request_headers`; `add_header`,
   * `proxy_hide_header`, `more_set_headers`/`more_clear_headers` → `response_headers`.
   * Each is an array directive: the nearest level with any replaces the inherited ones.
   */
  headerRules(route: YMap, r: RouteDraft): void {
    const req = { remove: seq(), set: map(), add: map() }
    for (const d of levelWith(r.chain, ['proxy_set_header'])) {
      if (d.name !== 'proxy_set_header') continue
      const name = d.args[0] ?? ''
      const lower = name.toLowerCase()
      const value = d.args[1] ?? ''
      if (lower === 'host' || ACCEPTED_HEADERS[lower]?.(value)) continue
      if (HOP_BY_HOP.has(lower)) { this.note(d, 'not converted: Portico manages hop-by-hop fields itself', false); continue }
      if (value === '') req.remove.items.push(scalar(name, `${this.from(d)} (an empty value: not sent)`))
      else if (!value.includes('$')) set(req.set, name, scalar(value, this.from(d)))
      else this.note(d, 'not converted: the value has variables, and Portico\'s header rules set literal values (it sets X-Forwarded-For/-Proto/-Host, X-Real-IP, Via and X-Request-Id itself)', false)
    }
    this.moreHeaders(r, 'more_set_input_headers', 'more_clear_input_headers', req)
    const res = { remove: seq(), set: map(), add: map() }
    for (const d of levelWith(r.chain, ['add_header'])) {
      const name = d.args[0] ?? ''
      if (name.toLowerCase() === 'strict-transport-security' && this.hstsOk.has(d)) continue
      const value = d.args[1] ?? ''
      const always = d.args[2] === 'always'
      if (value.includes('$')) { this.note(d, 'not converted: the value has variables, and Portico\'s header rules set literal values', false); continue }
      if (value === '') continue // nginx adds nothing for an empty value
      if (res.add.entries.some(([k]) => k.toLowerCase() === name.toLowerCase())) { this.note(d, 'a second add_header of one name: Portico adds one value a name', false); continue }
      set(res.add, name, scalar(value, `${this.from(d)}${always ? ' (Portico adds it to upstream responses of every status, not to its own error responses)' : ''}`))
      if (!always) this.note(d, 'without "always" nginx adds the field to responses of status 200, 201, 204, 206, 301, 302, 303, 304, 307 and 308 only; Portico adds it to every upstream response, 4xx and 5xx included', false)
    }
    for (const d of levelWith(r.chain, ['proxy_hide_header'])) res.remove.items.push(scalar(d.args[0] ?? '', this.from(d)))
    this.moreHeaders(r, 'more_set_headers', 'more_clear_headers', res)
    const write = (key: string, rules: typeof req) => {
      if (rules.remove.items.length + rules.set.entries.length + rules.add.entries.length === 0) return
      const m = set(route, key, map())
      if (rules.remove.items.length > 0) set(m, 'remove', rules.remove)
      if (rules.set.entries.length > 0) set(m, 'set', rules.set)
      if (rules.add.entries.length > 0) set(m, 'add', rules.add)
    }
    write('request_headers', req)
    write('response_headers', res)
  }

  /** headers-more `more_set_*headers 'Name: value'` and `more_clear_*headers Name` in their plain forms (no -s, -t, wildcards). */
  moreHeaders(r: RouteDraft, setName: string, clearName: string, rules: { remove: YSeq; set: YMap }): void {
    for (const d of levelWith(r.chain, [setName])) {
      if (d.args.some((a) => a.startsWith('-'))) { this.note(d, 'status or type conditions (-s, -t, -r) are not converted', false); continue }
      for (const a of d.args) {
        const m = /^([A-Za-z0-9!#$%&'*+.^_`|~-]+):\s*(.*)$/.exec(a)
        if (!m || m[2].includes('$')) { this.note(d, `"${a}" is not converted (literal "Name: value" only)`, false); continue }
        if (m[2] === '') rules.remove.items.push(scalar(m[1], this.from(d)))
        else set(rules.set, m[1], scalar(m[2], this.from(d)))
      }
    }
    for (const d of levelWith(r.chain, [clearName])) {
      if (d.args.some((a) => a.startsWith('-'))) { this.note(d, 'status or type conditions (-s, -t) are not converted', false); continue }
      for (const a of d.args) {
        const name = a.replace(/:.*$/, '')
        if (!/^[A-Za-z0-9!#$%&'+.^_`|~-]+$/.test(name)) { this.note(d, `"${a}" is not converted (wildcards are not)`, false); continue }
        rules.remove.items.push(scalar(name, this.from(d)))
      }
    }
  }

  /**
   * `set_real_ip_from` → `trusted_proxies`, `real_ip_header X-Forwarded-For` →
   * `real_ip_header` (Portico's walk is nginx's `real_ip_recursive on`). Portico reads one
   * list for every listener; nginx reads them per level.
   */
  realIp(root: YMap, httpBody: NginxDirective[]): void {
    const from: NginxDirective[] = []
    const headers: NginxDirective[] = []
    const recursive: NginxDirective[] = []
    const walk = (ds: NginxDirective[]) => {
      for (const d of ds) {
        if (d.name === 'set_real_ip_from') from.push(d)
        else if (d.name === 'real_ip_header') headers.push(d)
        else if (d.name === 'real_ip_recursive') recursive.push(d)
        else if (d.block && d.name !== 'upstream') walk(d.block)
      }
    }
    walk(httpBody)
    if (from.length === 0) return
    const header = headers[0] ?? null
    const h = (header?.args[0] ?? 'X-Real-IP').toLowerCase()
    if (headers.some((x) => (x.args[0] ?? '').toLowerCase() !== h)) this.note(headers[1], 'levels read the client address from different fields: Portico reads one for the whole config', this.accessConverted)
    if (h !== 'x-forwarded-for') {
      this.note(header ?? from[0], `nginx reads the client address from ${h === 'proxy_protocol' ? 'the PROXY protocol header' : header?.args[0] ?? 'X-Real-IP (the default of real_ip_header)'}; Portico reads X-Forwarded-For or Forwarded only: trusted_proxies not written (write it with real_ip_header: x-forwarded-for if those proxies send X-Forwarded-For)`, this.accessConverted)
      return
    }
    const trusted = seq()
    for (const d of from) {
      const a = d.args[0] ?? ''
      if (a.startsWith('unix:')) { this.note(d, 'Portico listens on TCP only', false); continue }
      const range = networkOf(a)
      if (range === null) { this.note(d, `address "${a}" is not converted (host names are not)`, this.accessConverted); continue }
      trusted.items.push(scalar(range, this.from(d)))
    }
    if (trusted.items.length === 0) return
    set(root, 'trusted_proxies', trusted)
    set(root, 'real_ip_header', scalar('x-forwarded-for', this.from(header)))
    const outside = from.find((d) => !httpBody.includes(d))
    if (outside) this.note(outside, 'Portico trusts these proxies for every listener and route, not only for this server or location', false)
    const rec = recursive.find((d) => d.args[0] === 'on')
    if (!rec || recursive.some((d) => d.args[0] !== 'on')) {
      this.note(recursive.find((d) => d.args[0] !== 'on') ?? header ?? from[0], 'real_ip_recursive off (the nginx default) takes the last address of X-Forwarded-For; Portico walks past every trusted address, as real_ip_recursive on does: they differ when that last address is itself trusted', false)
    }
  }

  /**
   * `limit_conn zone N` at http level only, on zones keyed by the client address →
   * `limits.max_requests_per_client_ip` (the smallest N): one count per client for every
   * location, as nginx keeps one per zone. Otherwise each route gets its `limit_conn`.
   */
  clientLimit(root: YMap, httpBody: NginxDirective[]): void {
    const uses: NginxDirective[] = []
    const walk = (ds: NginxDirective[]) => { for (const d of ds) { if (d.name === 'limit_conn') uses.push(d); if (d.block && d.name !== 'upstream') walk(d.block) } }
    walk(httpBody)
    if (uses.length === 0) return
    const byClient = (d: NginxDirective) => ['$binary_remote_addr', '$remote_addr'].includes(this.connZones.get(d.args[0] ?? '')?.args[0] ?? '')
    if (!uses.every((d) => httpBody.includes(d) && byClient(d) && Number(d.args[1]) >= 1)) return
    const least = uses.reduce((a, b) => (Number(b.args[1]) < Number(a.args[1]) ? b : a))
    this.globalConn = true
    const status = httpBody.find((d) => d.name === 'limit_conn_status')
    const limits = set(root, 'limits', map())
    set(limits, 'max_requests_per_client_ip', scalar(Number(least.args[1]), `${this.from(least)}; answered with 429`))
    const code = Number(status?.args[0] ?? 503)
    if (code !== 429) this.note(status ?? least, `Portico refuses requests over the limit with 429 Too Many Requests; nginx answers ${code}${status ? '' : ' (the default of limit_conn_status)'}`, false)
  }

  routeCache(route: YMap, r: RouteDraft): void {
    const pc = nearest(r.chain, 'proxy_cache')
    if (!pc || pc.args[0] === 'off') return
    const cache = map()
    set(cache, 'enabled', scalar(true, this.from(pc)))
    const stale = nearest(r.chain, 'proxy_cache_use_stale')
    if (stale && stale.args[0] !== 'off') {
      const on: YNode[] = []
      for (const a of stale.args) {
        const types = STALE_ON[a]
        if (types) for (const t of types) on.push(scalar(t))
        else if (/^http_5\d\d$/.test(a)) on.push(scalar(Number(a.slice(5))))
        else if (a === 'updating') this.note(stale, 'proxy_cache_use_stale updating: Portico collapses concurrent misses instead of serving stale while one updates', false)
        else this.note(stale, `proxy_cache_use_stale ${a} is not converted`, false)
      }
      set(cache, 'serve_stale_on', seq(on, this.from(stale)))
    }
    const lockTimeout = nearest(r.chain, 'proxy_cache_lock_timeout')
    if (lockTimeout) set(cache, 'collapse_timeout', scalar(formatDuration(parseNginxTime(lockTimeout.args[0] ?? '5s')), this.from(lockTimeout)))
    set(route, 'cache', cache)
  }

  cacheStore(root: YMap): void {
    if (this.cacheZones.size === 0) return
    const [d] = this.cacheZones.values()
    const maxSize = d.args.find((a) => a.startsWith('max_size='))
    this.note(d, 'Portico\'s cache store is in memory, shared by every route; the disk path and zone are not used', false)
    if (maxSize) {
      const bytes = parseNginxSize(maxSize.slice(9))
      const capped = Math.min(bytes, 256 * 1024 * 1024)
      const c = set(root, 'cache', map())
      set(c, 'max_size', scalar(formatSize(capped), `${this.from(d)}${capped < bytes ? ' (a disk size: capped to Portico\'s in-memory default)' : ''}`))
    }
  }

  /**
   * The Portico upstream of a route: one per nginx upstream block or proxy_pass address and
   * per set of location settings (timeouts, retries are per upstream in Portico).
   *
   * @returns its name, or null when it cannot be converted (noted)
   */
  upstreamFor(r: RouteDraft): string | null {
    const p = r.proxyPass
    const st = r.settings
    const node = map(this.fromRef(p))
    const endpoints = seq()
    const block = p.upstream !== null || (p.port === null && p.host !== null && this.upstreamBlocks.has(p.host)) ? this.upstreamBlocks.get(p.host as string) : undefined
    let count = 1
    let baseName: string
    if (block) {
      baseName = block.model.name
      node.comment = this.from(block.directive)
      count = 0
      const tlsUnix = p.scheme === 'https'
      const live = block.model.servers.filter((s) => !s.down && !s.backup && !(s.unix && tlsUnix))
      for (const s of block.model.servers) {
        const url = s.unix ? `unix:${s.host}` : `${p.scheme}://${s.host.includes(':') ? `[${s.host}]` : s.host}:${s.port}`
        const sd = this.directiveAt(s)
        const src = this.from(sd)
        if (s.unix && tlsUnix) { endpoints.items.push(note(`${s.address} left out: https over a unix socket (${this.at(s)})`)); this.note(sd ?? s, 'Portico speaks plain HTTP over unix sockets (no TLS)', true); continue }
        if (s.down) { endpoints.items.push(note(`${url} left out: marked down (${this.at(s)})`)); continue }
        count++
        if (s.weight !== 1 || s.backup) {
          const e = map(src)
          set(e, 'url', scalar(url))
          if (s.weight !== 1) set(e, 'weight', scalar(Math.min(1000, s.weight)))
          if (s.backup) set(e, 'backup', scalar(true))
          endpoints.items.push(e)
        } else endpoints.items.push(scalar(url, src))
        for (const param of (sd?.args ?? []).slice(1)) {
          const k = param.split('=')[0]
          if (!['weight', 'max_fails', 'fail_timeout', 'backup', 'down', 'resolve', 'max_conns', 'service'].includes(k)) this.note(sd ?? s, `server parameter "${param}" is not converted`, false)
        }
      }
      if (live.length === 0) {
        this.note(block.directive, 'no server of this upstream can be converted (all down, or unix sockets under https)', true)
        return null
      }
      set(node, 'endpoints', endpoints)
      this.balancing(node, block.directive)
      this.outlier(node, block.model, live)
      const ka = block.directive.block?.find((c) => c.name === 'keepalive')
      const kat = block.directive.block?.find((c) => c.name === 'keepalive_timeout')
      if (ka) set(node, 'keepalive', map(this.from(ka))).entries.push(['idle_timeout', scalar(formatDuration(block.model.keepaliveTimeoutMs), this.from(kat ?? null, 'nginx default keepalive_timeout 60s'))])
      else set(node, 'keepalive', map('no keepalive in the nginx upstream (a connection per request); Portico reuses connections')).entries.push(['idle_timeout', scalar('4s', 'Portico default')])
      const maxConns = live.map((s) => /max_conns=(\d+)/.exec(this.directiveAt(s)?.args.join(' ') ?? '')?.[1]).filter((x) => x !== undefined)
      if (maxConns.length > 0 && Number(maxConns[0]) > 0) set(node, 'limits', map()).entries.push(['max_connections', scalar(Number(maxConns[0]), this.from(this.directiveAt(live[0])))])
    } else if (p.unix) {
      baseName = `unix-${(p.host as string).split('/').pop()?.replace(/\.sock$/, '') ?? 'socket'}`.replace(/[^A-Za-z0-9_.-]/g, '_')
      endpoints.items.push(scalar(`unix:${p.host}`, this.fromRef(p)))
      set(node, 'endpoints', endpoints)
      set(node, 'outlier_detection', map('a direct proxy_pass address is never marked failed by nginx')).entries.push(['consecutive_failures', scalar(0)])
    } else {
      baseName = `${p.host}${p.port !== null ? `-${p.port}` : ''}`.replace(/[^A-Za-z0-9_.-]/g, '_')
      const port = p.port ?? (p.scheme === 'https' ? 443 : 80)
      endpoints.items.push(scalar(`${p.scheme}://${(p.host as string).includes(':') ? `[${p.host}]` : p.host}:${port}`, this.fromRef(p)))
      set(node, 'endpoints', endpoints)
      // nginx has no passive ejection for a single direct address (max_fails is per upstream server).
      set(node, 'outlier_detection', map('a direct proxy_pass address is never marked failed by nginx')).entries.push(['consecutive_failures', scalar(0)])
    }
    this.timeouts(node, st)
    this.retries(node, st, count)
    if (st.sources.bufferSizeBytes) set(node, 'max_response_header_size', scalar(formatSize(st.bufferSizeBytes), this.from(this.directiveAt(st.sources.bufferSizeBytes))))
    this.upstreamTls(node, p, st, r.chain)
    this.dns(node, block, r.chain)
    const fingerprint = JSON.stringify(toValue(node))
    const same = this.upstreams.find((u) => u.fingerprint === fingerprint && u.name.replace(/-\d+$/, '') === baseName.replace(/-\d+$/, ''))
    if (same) return same.name
    let name = baseName
    for (let i = 2; this.upstreams.some((u) => u.name === name); i++) name = `${baseName}-${i}`
    if (name !== baseName) node.comment = `${node.comment ?? ''}; settings of ${this.at(r.location)} differ from the other locations using it`
    this.upstreams.push({ name, node, fingerprint })
    return name
  }

  balancing(node: YMap, block: NginxDirective): void {
    for (const c of block.block ?? []) {
      if (c.name === 'least_conn') set(node, 'load_balancing', scalar('least_request', this.from(c)))
      else if (c.name === 'random') set(node, 'load_balancing', scalar(c.args.includes('least_conn') ? 'least_request' : 'random', this.from(c)))
      else if (['hash', 'ip_hash', 'sticky', 'ntlm', 'least_time'].includes(c.name)) {
        this.note(c, `${c.name} is not converted: Portico balances by round_robin, least_request or random, so a client is not kept on one server`, true)
      } else if (!['server', 'keepalive', 'keepalive_timeout', 'keepalive_requests', 'zone', 'resolver', 'resolver_timeout', 'keepalive_time'].includes(c.name)) {
        this.note(c, 'not converted: Portico has no equivalent', false)
      }
    }
    if (!node.entries.some(([k]) => k === 'load_balancing')) set(node, 'load_balancing', scalar('round_robin', 'nginx default: weighted round robin'))
  }

  outlier(node: YMap, up: NginxUpstream, live: NginxUpstream['servers']): void {
    const first = live[0]
    const differs = live.some((s) => s.maxFails !== first.maxFails || s.failTimeoutMs !== first.failTimeoutMs)
    if (differs) this.note(this.directiveAt(live[1]) ?? up, 'servers of this upstream set different max_fails/fail_timeout: Portico sets outlier detection per upstream; the first server\'s values are used', false)
    const src = /max_fails|fail_timeout/.test(this.directiveAt(first)?.args.join(' ') ?? '') ? this.from(this.directiveAt(first)) : 'nginx default max_fails=1 fail_timeout=10s'
    // ngx_http_upstream_round_robin: a group of one primary server ("single") ignores max_fails.
    if (up.servers.filter((s) => !s.backup).length === 1) {
      set(node, 'outlier_detection', map('nginx never marks the only server of an upstream failed')).entries.push(['consecutive_failures', scalar(0)])
      return
    }
    const od = set(node, 'outlier_detection', map(src))
    set(od, 'consecutive_failures', scalar(first.failTimeoutMs > 0 ? first.maxFails : 0, first.failTimeoutMs > 0 ? undefined : 'fail_timeout=0: never marked failed'))
    if (first.maxFails > 0 && first.failTimeoutMs > 0) {
      set(od, 'base_ejection_time', scalar(formatDuration(first.failTimeoutMs), 'fail_timeout'))
      set(od, 'max_ejection_time', scalar(formatDuration(first.failTimeoutMs), 'nginx does not lengthen repeated ejections'))
      set(od, 'max_ejection_percent', scalar(100, 'nginx may mark every server failed'))
    }
  }

  timeouts(node: YMap, st: ProxySettings): void {
    const t = set(node, 'timeouts', map())
    const src = (k: 'connectTimeoutMs' | 'readTimeoutMs' | 'sendTimeoutMs', name: string) =>
      (st.sources[k] ? this.from(this.directiveAt(st.sources[k] as SourceRef)) : `nginx default ${name} 60s`)
    set(t, 'connect', scalar(formatDuration(st.connectTimeoutMs), src('connectTimeoutMs', 'proxy_connect_timeout')))
    set(t, 'response_header', scalar(formatDuration(st.readTimeoutMs), src('readTimeoutMs', 'proxy_read_timeout')))
    const idle = Math.max(st.readTimeoutMs, st.sendTimeoutMs)
    set(t, 'idle', scalar(formatDuration(idle), `${st.readTimeoutMs >= st.sendTimeoutMs ? src('readTimeoutMs', 'proxy_read_timeout') : src('sendTimeoutMs', 'proxy_send_timeout')} (Portico has one idle timeout for both directions)`))
  }

  retries(node: YMap, st: ProxySettings, endpoints: number): void {
    const d = st.sources.nextUpstream ? this.directiveAt(st.sources.nextUpstream) : null
    const r = set(node, 'retries', map(this.from(d, 'nginx default proxy_next_upstream error timeout')))
    if (st.nextUpstream.includes('off')) { set(r, 'attempts', scalar(1)); return }
    const on: YNode[] = []
    const add = (v: string | number) => { if (!on.some((x) => x.kind === 'scalar' && x.value === v)) on.push(scalar(v)) }
    for (const c of st.nextUpstream) {
      if (c === 'error') { add('connect_failure'); add('reset') } else if (c === 'timeout') add('http_response_timeout')
      else if (/^http_5\d\d$/.test(c)) add(Number(c.slice(5)))
      else if (c === 'non_idempotent') this.note(d ?? st.sources.nextUpstream as SourceRef, 'non_idempotent: Portico retries non-idempotent requests only when nothing was sent (connect failures)', false)
      else this.note(d ?? st.sources.nextUpstream as SourceRef, `proxy_next_upstream ${c} is not converted`, false)
    }
    const tries = st.nextUpstreamTries > 0 ? st.nextUpstreamTries : Infinity
    const attempts = Math.max(1, Math.min(tries, endpoints, 10))
    const tsrc = st.sources.nextUpstreamTries ? this.from(this.directiveAt(st.sources.nextUpstreamTries)) : 'nginx tries each server once (proxy_next_upstream_tries 0)'
    set(r, 'attempts', scalar(attempts, tsrc))
    set(r, 'on', seq(on))
  }

  upstreamTls(node: YMap, p: ProxyPass, st: ProxySettings, chain: Chain): void {
    if (p.scheme !== 'https') return
    const tls = set(node, 'tls', map())
    const ca = nearest(chain, 'proxy_ssl_trusted_certificate')
    if (ca) set(tls, 'ca', scalar(ca.args[0], this.from(ca)))
    const name = nearest(chain, 'proxy_ssl_name')
    if (name && !name.args[0].includes('$')) set(tls, 'servername', scalar(name.args[0], this.from(name)))
    const cert = nearest(chain, 'proxy_ssl_certificate')
    const key = nearest(chain, 'proxy_ssl_certificate_key')
    if (cert && key) {
      const cc = set(tls, 'client_certificate', map())
      set(cc, 'cert', scalar(cert.args[0], this.from(cert)))
      set(cc, 'key', scalar(key.args[0], this.from(key)))
    }
    const verify = st.sources.sslVerify ? this.directiveAt(st.sources.sslVerify) : null
    set(tls, 'insecure_skip_verify', scalar(!st.sslVerify, st.sslVerify ? this.from(verify) : `${this.from(verify, 'nginx default proxy_ssl_verify off')}: certificates not verified, as in nginx`))
  }

  dns(node: YMap, block: { model: NginxUpstream; directive: NginxDirective } | undefined, chain: Chain): void {
    const resolver = (block ? block.directive.block?.find((c) => c.name === 'resolver') : undefined) ?? nearest(chain, 'resolver')
    if (!resolver) return
    const dns = set(node, 'dns', map(this.from(resolver)))
    const ips = resolver.args.filter((a) => !a.includes('='))
    const usable = ips.filter((a) => /^[\d.]+(:\d+)?$|^\[[0-9a-fA-F:]+\](:\d+)?$|^[0-9a-fA-F:]+$/.test(a))
    if (usable.length < ips.length) this.note(resolver, 'resolver names are not converted: Portico asks DNS servers by IP address', false)
    if (usable.length > 0) set(dns, 'resolvers', seq(usable.map((a) => scalar(a))))
    const valid = resolver.args.find((a) => a.startsWith('valid='))
    if (valid) set(dns, 'max_ttl', scalar(formatDuration(parseNginxTime(valid.slice(6))), 'valid='))
  }
}

/** proxy_set_header fields Portico already sends the same way. */
const ACCEPTED_HEADERS: Record<string, (v: string) => boolean> = {
  connection: (v) => v === '' || v === '$connection_upgrade' || v === 'upgrade' || v === '"upgrade"',
  upgrade: (v) => v === '$http_upgrade',
  'x-forwarded-for': (v) => v === '$proxy_add_x_forwarded_for',
  'x-forwarded-proto': (v) => v === '$scheme',
  'x-forwarded-host': (v) => v === '$host' || v === '$http_host',
  // forwarded_headers: strip (the default) sets X-Real-IP to the client's address.
  'x-real-ip': (v) => v === '$remote_addr',
}

/** proxy_cache_use_stale conditions and the RFC 9209 types Portico names them by. */
const STALE_ON: Record<string, string[]> = {
  error: ['connection_refused', 'connection_terminated', 'dns_error', 'destination_ip_unroutable', 'tls_protocol_error', 'tls_certificate_error', 'destination_unavailable'],
  timeout: ['connection_timeout', 'http_response_timeout'],
  invalid_header: ['http_protocol_error', 'http_response_header_section_size'],
}

/** How nginx's string prefix differs from Portico's segment prefix, for the route's comment. */
function prefixDifference(path: string): string {
  const bare = path.replace(/\/+$/, '')
  return path.endsWith('/')
    ? ` (nginx answers ${bare} with a 301 to ${path}; Portico routes ${bare} here)`
    : ` (nginx also matches ${path}x...; Portico ${path} and ${path}/... only)`
}

/** Hop-by-hop fields (RFC 9110 §7.6.1) Portico writes itself upstream. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'content-length'])

/** The directives of the nearest level of `chain` that has any of `names` (nginx array-directive inheritance). */
function levelWith(chain: Chain, names: string[]): NginxDirective[] {
  for (const level of chain) {
    const found = level.filter((d) => names.includes(d.name))
    if (found.length > 0) return found
  }
  return []
}

/** An nginx address or CIDR as Portico takes it: host bits cleared (nginx ignores them, with a warning). Null when not an address. */
function networkOf(text: string): string | null {
  const problem = cidrProblem(text)
  if (problem === null) return text
  const m = /the network is (\S+)$/.exec(problem)
  return m ? m[1] : null
}

/** PCRE constructs JavaScript reads otherwise or not at all. */
const PCRE_ONLY: Array<[RegExp, string]> = [
  [/\(\?[>|(#]|\(\?P[<=>]/, 'atomic, branch-reset, conditional or Python-style groups'],
  [/\\[AZzGQEhHRKvVXC]/, 'a PCRE escape (\\A, \\Z, \\z, \\G, \\Q, \\h, \\R, \\K, \\v, ...)'],
  [/\\[pP]\{|\\x\{/, 'Unicode properties or \\x{...}'],
  [/\[\[?:[a-z]+:\]/, 'POSIX classes ([[:alpha:]])'],
  [/\(\?[a-zA-Z-]+\)/, 'inline options other than a leading (?i)'],
]

/**
 * An nginx (PCRE) location regex as a JavaScript one for `match.path_regex`; `~*` (or a
 * leading `(?i)`) becomes a case-insensitive group `(?i:…)`.
 *
 * @returns the JavaScript source, or why it cannot be converted
 */
export function pcreToJs(src: string, caseInsensitive: boolean): string | { problem: string } {
  let body = src
  if (body.startsWith('(?i)')) { caseInsensitive = true; body = body.slice(4) }
  for (const [re, what] of PCRE_ONLY) if (re.test(body)) return { problem: `${what} have no JavaScript equivalent` }
  const out = caseInsensitive ? `(?i:${body})` : body
  try {
    new RegExp(out)
  } catch (e) {
    return { problem: `JavaScript does not read it: ${(e as Error).message}` }
  }
  return out
}

/** A `^~` prefix location of a server and the longer plain prefixes that extend it. */
interface StopPrefix { path: string; longer: string[] }

/** The `^~` prefixes of a server (nested ones included): nginx checks no regex location for a request whose longest prefix is one of them. */
function stopPrefixes(s: ServerInfo): StopPrefix[] {
  const all: Array<{ path: string; stop: boolean }> = []
  const walk = (ds: NginxDirective[]) => {
    for (const d of ds) {
      if (d.name !== 'location' || !d.block) continue
      if (d.args.length === 1 && !d.args[0].startsWith('@')) all.push({ path: d.args[0], stop: false })
      else if (d.args.length === 2 && d.args[0] === '^~') all.push({ path: d.args[1], stop: true })
      walk(d.block)
    }
  }
  walk(s.directive.block ?? [])
  return all.filter((x) => x.stop).map((x) => ({
    path: x.path,
    longer: all.filter((y) => !y.stop && y.path.length > x.path.length && y.path.startsWith(x.path)).map((y) => y.path),
  }))
}

const escapeRegex = (t: string) => t.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')

/**
 * A location regex that also refuses the paths whose longest prefix is a `^~` one: a
 * lookahead at the start, then the regex searched as before (`[\s\S]*?` keeps its
 * unanchored search; its own `^` still means the start).
 */
function excludePrefixes(regex: string, stops: StopPrefix[]): string {
  if (stops.length === 0) return regex
  const alts = stops.map((p) => `${escapeRegex(p.path)}${p.longer.length > 0 ? `(?!${p.longer.map((q) => escapeRegex(q.slice(p.path.length))).join('|')})` : ''}`)
  return `^(?!${alts.join('|')})[\\s\\S]*?(?:${regex})`
}

/** Bytes as a Portico size (`1MiB`, `64KiB`, or bytes). */
function formatSize(bytes: number): string {
  if (bytes > 0 && bytes % (1024 * 1024 * 1024) === 0) return `${bytes / 1024 ** 3}GiB`
  if (bytes > 0 && bytes % (1024 * 1024) === 0) return `${bytes / 1024 ** 2}MiB`
  if (bytes > 0 && bytes % 1024 === 0) return `${bytes / 1024}KiB`
  return String(bytes)
}

/**
 * Converts a parsed nginx configuration and its doctor model.
 *
 * @returns the YAML, the notes (what is left out, with file:line and why) and whether routing is complete
 */
export function convertNginx(tree: NginxConfigTree, model: NginxModel): Conversion {
  return new Converter(tree, model).convert()
}

/**
 * Reads an nginx configuration (includes expanded) and converts it.
 *
 * @param path main configuration file, e.g. `/etc/nginx/nginx.conf`
 * @throws {NginxParseError} `file:line: message` when nginx would refuse the configuration
 */
export async function convertNginxFile(path: string): Promise<Conversion> {
  const tree = await parseNginxConfig(path)
  return convertNginx(tree, buildNginxModel(tree))
}

/** One note as a stderr line: `file:line: directive: reason`. */
export function formatNote(n: ConversionNote): string {
  return `${n.file}:${n.line}: ${n.directive ? `${n.directive}: ` : ''}${n.reason}${n.routing ? ' (routing not converted)' : ''}`
}

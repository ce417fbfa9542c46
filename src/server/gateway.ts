/**
 * The gateway: listeners, the runtime in force, and the access log, started and stopped
 * together. `portico serve`, the demo and the tests all run Portico through this.
 */
import type { EventEmitter } from 'node:events'
import { http } from '../lib/node-http.ts'
import type { AddressInfo, Socket } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import type { Duplex } from 'node:stream'
import { describeReload, upstreamChanges, type ReloadOutcome, type ReloadSummary } from './reload.ts'
import { ConfigError } from '../config/problems.ts'
import type { BufferingConfig, ClientLimitsConfig, Config, ListenerConfig } from '../config/schema.ts'
import { createAccessLog, toRecord, type AccessLogSink } from '../observe/access-log.ts'
import { FailureRing } from '../observe/failures.ts'
import { LiveStats } from '../observe/live.ts'
import { logger } from '../lib/logger.ts'
import { Metrics, type BufferUsage } from '../observe/metrics.ts'
import { attemptStateOf } from '../proxy/attempt.ts'
import { createProxyHandler, type HandlerOptions, type RequestTracker } from '../proxy/driver.ts'
import { buildRuntime, type Runtime } from '../proxy/runtime.ts'
import { createUpgradeHandler, type UpgradeSession } from '../proxy/upgrade.ts'
import { createConnectRefusal } from '../proxy/connect.ts'
import { createClientErrorHandler } from '../proxy/client-error.ts'
import { acceptsUpgrade, requestRules, type RequestRules } from '../protect/validate.ts'
import { CoalescingResponse, SEND_TIMEOUT } from '../lib/coalesce.ts'
import { SlotSet } from '../lib/slot-set.ts'
import { CertificateStore, certificateWarnings, createSecureServer, loadCertificates, redirectHandler, reloadCertificates, type LoadedCertificate, type SecureServer } from './tls.ts'
import type { PoolOptions, UpstreamPool } from '../upstream/pool.ts'
import { ClientLimiter } from '../protect/client-limit.ts'
import { ConnectionGate, type ConnectionLimits } from '../protect/connection-gate.ts'
import { BufferBudget, type BufferLimits } from '../protect/spill.ts'
import type { HostLimitFeed } from '../protect/rate-limit.ts'

/** Options of a gateway beyond the config. */
export interface GatewayOptions {
  /** Access log sink; default from `config.access_log`. */
  accessLog?: AccessLogSink
  /**
   * Re-reads the config the gateway was started from (the file of `portico serve -c`),
   * for SIGHUP and the admin API's `POST /reload`.
   * @throws {ConfigError} when the file is invalid (the old config keeps serving)
   */
  loadConfig?: () => Promise<Config>
  /** Given to every upstream pool, at start and on reload: how host names are resolved (tests inject a loopback resolver). */
  pools?: PoolOptions
  /**
   * Makes the admin API server when `admin` is configured (src/admin builds it; the server
   * folder never imports the admin one). Without it no admin API is started.
   */
  admin?: (gateway: Gateway) => AdminService
  /**
   * How listeners bind. A worker process of a cluster binds each address itself with
   * `reusePort` (SO_REUSEPORT: the kernel spreads connections among the workers) and
   * `exclusive` (not through the cluster primary); default: a plain bind.
   */
  bind?: { reusePort?: boolean; exclusive?: boolean }
  /** In a worker process: how `local` rate limits are kept in step with the host's other workers (src/protect/rate-limit.ts). */
  limits?: HostLimitFeed
}

/** The admin API as the gateway starts and stops it. */
export interface AdminService {
  /** The bound address once listening, else null. */
  readonly address: AddressInfo | null
  /** Binds `host:port`. @throws {Error} when the address cannot be bound */
  listen(host: string, port: number): Promise<unknown>
  /** Stops accepting and closes open admin connections. */
  close(): Promise<void>
}

/** A running listener. */
export interface RunningListener {
  readonly config: ListenerConfig
  /** `http.Server` for plain listeners; for `tls` listeners an HTTP/2 secure server (HTTP/1.1 too by ALPN) or an HTTPS server. */
  readonly server: http.Server | SecureServer
  /** The certificates of a `tls` listener (swapped on reload), else null. */
  readonly certificates: CertificateStore | null
  /** Bound address (the real port when the config said port 0). */
  readonly address: AddressInfo
}

/** Splits `host:port` / `[v6]:port`. @throws {Error} on a malformed address */
export function splitAddress(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(address)
  if (!m) throw new Error(`invalid address "${address}": expected host:port`)
  return { host: m[1] ?? m[2], port: Number(m[3]) }
}

/** Portico's running state. */
export class Gateway {
  #runtime: Runtime
  readonly accessLog: AccessLogSink
  readonly listeners: RunningListener[] = []
  readonly #sockets = new SlotSet<Socket>()
  /** Upgrades being connected and open tunnels (WebSocket), closed by `stop` after the drain time. */
  readonly #upgrades = new SlotSet<UpgradeSession>()
  /** The last gateway failures, for the admin API (fed by the access log). */
  readonly failures = new FailureRing()
  /** Prometheus metrics (fed by the access log). */
  readonly metrics: Metrics
  /** The last hour in 10 s buckets, for the dashboard and `portico top` (fed by the access log). */
  readonly live = new LiveStats()
  /** The admin API, when `admin` is configured and the gateway started. */
  admin: AdminService | null = null
  readonly #adminFactory: ((gateway: Gateway) => AdminService) | null
  readonly #loadConfig: (() => Promise<Config>) | null
  /** Requests in flight per runtime: a retired runtime's pools close when its count reaches 0. */
  readonly #inFlight = new Map<Runtime, number>()
  /** Replaced runtimes that still have requests in flight. */
  readonly #retiring = new Set<Runtime>()
  readonly #closedPools = new WeakSet<UpstreamPool>()
  /** Responses not yet closed, to mark `Connection: close` when draining starts (a SlotSet: one add and one delete per request). */
  readonly #responses = new SlotSet<http.ServerResponse>()
  /** Listeners closed by a reload, still draining. */
  readonly #closingListeners = new Set<Promise<void>>()
  #draining = false
  #reloads: Promise<unknown> = Promise.resolve()
  /** Memory and temporary files of request and response buffering, for the whole process (config `buffering`). */
  readonly buffers: BufferBudget
  /** Requests in progress per client address (config `limits.max_requests_per_client_ip`). */
  readonly clients: ClientLimiter
  /** The per-connection gate and the handler options of each proxying listener. */
  readonly #admission = new Map<http.Server | SecureServer, { gate: ConnectionGate; options: HandlerOptions }>()

  readonly #poolOptions: PoolOptions | undefined
  readonly #hostLimits: HostLimitFeed | undefined
  readonly #bind: GatewayOptions['bind']

  constructor(config: Config, opts: GatewayOptions = {}) {
    this.#poolOptions = opts.pools
    this.#bind = opts.bind
    this.#hostLimits = opts.limits
    this.#runtime = buildRuntime(config, undefined, undefined, opts.pools, undefined, opts.limits)
    this.buffers = new BufferBudget(bufferLimits(config.buffering))
    this.clients = new ClientLimiter(config.limits.max_requests_per_client_ip ?? null)
    this.#loadConfig = opts.loadConfig ?? null
    this.#adminFactory = opts.admin ?? null
    this.accessLog = opts.accessLog ?? createAccessLog(config.access_log.format, config.access_log.path)
    this.metrics = new Metrics(() => this.#endpointHealth(), () => this.#runtime.cache.store, () => this.#retries(), () => this.#bufferUsage(), () => this.#limitErrors())
    const previous = this.accessLog.observe
    this.accessLog.observe = (ctx, durationMs) => {
      previous?.(ctx, durationMs)
      this.metrics.observe(ctx, durationMs)
      this.live.observe(ctx, durationMs)
      if (ctx.error !== null) this.failures.observe(toRecord(ctx, durationMs))
    }
  }

  * #endpointHealth() {
    const now = Date.now()
    for (const pool of this.#runtime.pools.values()) {
      for (const e of pool.endpoints) yield { upstream: pool.name, endpoint: e.label, healthy: e.isAvailable(now) }
    }
  }

  * #limitErrors() {
    for (const l of this.#runtime.filters.limits.values()) if (l.redis) yield { route: l.route, limit: l.name, errors: l.storeErrors }
  }

  * #retries() {
    for (const pool of this.#runtime.pools.values()) yield { upstream: pool.name, ...attemptStateOf(pool).retry.counts }
  }

  #bufferUsage(): BufferUsage {
    const b = this.buffers
    let waiting = 0
    for (const a of this.#admission.values()) waiting += a.gate.waiting
    return { memory: b.memory, temp: b.temp, files: b.files, spills: b.spills, waiting }
  }

  /** The runtime in force. */
  get runtime(): Runtime {
    return this.#runtime
  }

  /** Whether the gateway is stopping (in-flight requests drain, new connections are refused). */
  get draining(): boolean {
    return this.#draining
  }

  /** Pools a reload replaced or removed that still have requests in flight (they close when those end). */
  retiringPools(): UpstreamPool[] {
    const current = new Set(this.#runtime.pools.values())
    const out: UpstreamPool[] = []
    for (const rt of this.#retiring) for (const p of rt.pools.values()) if (!current.has(p)) out.push(p)
    return out
  }

  /**
   * Starts every listener, then the admin API when `admin` is configured.
   * @throws {Error} when an address cannot be bound (EADDRINUSE, EACCES)
   */
  async start(): Promise<void> {
    warnInsecureUpstreams(this.#runtime.config)
    checkBufferDir(this.buffers)
    for (const lc of this.#runtime.config.listeners) this.listeners.push(await this.#listen(lc))
    const admin = this.#runtime.config.admin
    if (admin && this.#adminFactory !== null) {
      this.admin = this.#adminFactory(this)
      const { host, port } = splitAddress(admin.address)
      await this.admin.listen(host, port)
    }
  }

  /**
   * Counts each request against the runtime it starts on (the one the driver reads) and,
   * while draining, answers with `Connection: close`; uncounts it when its response closes.
   */
  readonly #tracker: RequestTracker = {
    start: (rt, req, res) => {
      this.#inFlight.set(rt, (this.#inFlight.get(rt) ?? 0) + 1)
      this.#responses.add(res)
      // HTTP/2 has no Connection field (RFC 9113 §8.2.2): closing the server sends GOAWAY instead.
      if (this.#draining && req.httpVersionMajor < 2) res.setHeader('connection', 'close')
    },
    end: (rt, res) => {
      this.#responses.delete(res)
      const n = (this.#inFlight.get(rt) ?? 1) - 1
      if (n > 0) this.#inFlight.set(rt, n)
      else this.#inFlight.delete(rt)
      if (n <= 0 && this.#retiring.has(rt)) this.#retire(rt)
      // A response that had started before draining leaves a keep-alive connection idle.
      if (this.#draining) setImmediate(() => this.#closeIdle())
    },
  }

  /**
   * Registers the `'upgrade'` entry (WebSocket and other HTTP/1.1 upgrades, RFC 9110 §7.8)
   * on a listener's server: `http.Server`, or a TLS server (HTTPS, or HTTP/2 with
   * `allowHTTP1`) whose HTTP/1.1 clients may upgrade too. Each upgrade counts against the
   * runtime it started on until its tunnel closes, and `stop` closes the tunnels left.
   */
  #acceptUpgrades(server: EventEmitter, rules: RequestRules, listener: string): void {
    // Only upgrades a route allows are tunnelled; Node hands the others to the request handler as plain requests.
    ;(server as { shouldUpgradeCallback?: (req: http.IncomingMessage) => boolean }).shouldUpgradeCallback = (req) => acceptsUpgrade(req, rules, this.#runtime.router, this.#runtime.filters.trusted)
    const handle = createUpgradeHandler(() => this.#runtime, this.accessLog, listener)
    server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      const rt = this.#runtime
      this.#inFlight.set(rt, (this.#inFlight.get(rt) ?? 0) + 1)
      const session = handle(req, socket, head)
      this.#upgrades.add(session)
      void session.closed.then(() => {
        this.#upgrades.delete(session)
        const n = (this.#inFlight.get(rt) ?? 1) - 1
        if (n > 0) this.#inFlight.set(rt, n)
        else this.#inFlight.delete(rt)
        if (n <= 0 && this.#retiring.has(rt)) this.#retire(rt)
      })
    })
  }

  #closeIdle(): void {
    for (const l of this.listeners) closeIdleConnections(l.server)
  }

  /** Binds one listener. @throws {Error} when the address cannot be bound */
  async #listen(lc: ListenerConfig): Promise<RunningListener> {
    const http1 = {
      maxHeaderSize: lc.max_header_size,
      headersTimeout: lc.timeouts.header_read,
      // Portico runs body idle timers itself; Node's whole-request timeout would cut long uploads.
      requestTimeout: 0,
      keepAliveTimeout: lc.timeouts.keepalive,
      connectionsCheckingInterval: 250,
      noDelay: true,
      // A missing Host is refused by the "validate request" phase (classified and logged), not by Node's bare 400.
      requireHostHeader: false,
      ServerResponse: CoalescingResponse,
    }
    const rules = requestRules(lc)
    let admission: { gate: ConnectionGate; options: HandlerOptions } | null = null
    let handler: http.RequestListener
    if (lc.redirect_to_https !== undefined) {
      handler = redirectHandler(lc.redirect_to_https)
    } else {
      const options: HandlerOptions = { scheme: lc.tls ? 'https' : 'http', listener: lc.address, maxBodyBytes: lc.max_request_body_size ?? null, bodyIdleMs: lc.timeouts.body_idle, rules, protection: { budget: this.buffers, clients: this.clients } }
      const proxy = createProxyHandler(() => this.#runtime, this.accessLog, options, this.#tracker)
      // Pipelined HTTP/1.1 requests one at a time, HTTP/2 streams up to the per-connection bound (DESIGN §9).
      admission = { gate: new ConnectionGate(connectionLimits(this.#runtime.config.limits), proxy), options }
      handler = admission.gate.handle
    }
    const certificates = lc.tls ? new CertificateStore(loadCertificates(lc.tls)) : null
    if (lc.tls) for (const w of certificateWarnings(lc.tls)) logger.warn({ listener: lc.address }, w)
    const server = lc.tls && certificates
      ? createSecureServer(lc.tls, certificates, http1, { maxHeaderListSize: lc.max_header_size, maxConcurrentStreams: lc.http2.max_concurrent_streams }, lc.timeouts.keepalive, handler)
      : http.createServer(http1, handler)
    if (lc.max_connections !== undefined) server.maxConnections = lc.max_connections
    ;(server as { [SEND_TIMEOUT]?: number })[SEND_TIMEOUT] = lc.timeouts.send
    if (admission !== null) this.#admission.set(server, admission)
    // A redirect listener proxies nothing: an upgrade request gets the 308 like any other.
    if (lc.redirect_to_https === undefined) this.#acceptUpgrades(server, rules, lc.address)
    // Without a listener Node drops a CONNECT silently; it gets its 405 and log line instead.
    server.on('connect', createConnectRefusal(() => this.#runtime, this.accessLog, rules))
    // An expectation other than 100-continue is ignored (RFC 9110 §10.1.1 allows it; nginx does) and
    // Expect is not forwarded, instead of Node's bare 417 that neither classifies nor logs.
    server.on('checkExpectation', handler)
    // Requests Node's parser refuses get a classified answer and a log line, not Node's bare 400.
    server.on('clientError', createClientErrorHandler(() => this.#runtime, this.accessLog))
    ;(server as http.Server).keepAliveTimeout = lc.timeouts.keepalive
    // tls.Server emits 'connection' with the TCP socket before the handshake, so draining can destroy it too.
    server.on('connection', (s: Socket) => {
      this.#sockets.add(s)
      s.once('close', () => this.#sockets.delete(s))
    })
    const { host, port } = splitAddress(lc.address)
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      const done = (): void => {
        server.removeListener('error', reject)
        resolve()
      }
      if (this.#bind === undefined) server.listen(port, host, done)
      else server.listen({ port, host, reusePort: this.#bind.reusePort ?? false, exclusive: this.#bind.exclusive ?? false }, done)
    })
    return { config: lc, server, certificates, address: server.address() as AddressInfo }
  }

  /**
   * Swaps in a new config atomically, like `nginx -s reload`: new listener addresses are
   * bound first (if one fails, nothing changes and the error is thrown), then new requests
   * use the new routes and pools. Unchanged upstreams keep their pool (connections, health
   * and ejection state); requests in flight finish on the runtime they started with, whose
   * retired pools close gracefully once those requests end. Listeners whose address left
   * the config stop accepting and drain. Reloads run one at a time.
   *
   * @returns what changed
   * @throws {Error} when a new listener address cannot be bound (the old config keeps serving)
   */
  reload(config: Config): Promise<ReloadSummary> {
    const run = this.#reloads.then(() => this.#apply(config))
    this.#reloads = run.catch(() => {})
    return run
  }

  async #apply(config: Config): Promise<ReloadSummary> {
    if (this.#draining) throw new Error('the gateway is shutting down')
    const old = this.#runtime
    const before = new Set(this.listeners.map((l) => l.config.address))
    const after = new Set(config.listeners.map((l) => l.address))
    // A buffering directory that cannot hold temporary files refuses the reload, as at start.
    const limits = bufferLimits(config.buffering)
    if (limits.tempDir !== this.buffers.limits.tempDir) checkBufferDir(new BufferBudget(limits))
    // Certificates of kept TLS listeners are re-read first: an unreadable one refuses the whole reload.
    const certs = new Map<string, LoadedCertificate[]>()
    for (const lc of config.listeners) {
      const running = this.listeners.find((l) => l.config.address === lc.address)
      if (lc.tls && running?.certificates) certs.set(lc.address, loadCertificates(lc.tls))
    }
    const bound: RunningListener[] = []
    try {
      for (const lc of config.listeners) if (!before.has(lc.address)) bound.push(await this.#listen(lc))
    } catch (err) {
      await Promise.all(bound.map((l) => closeServer(l.server)))
      throw err
    }
    const next = buildRuntime(config, old.pools, old.cache, this.#poolOptions, old.filters, this.#hostLimits)
    warnInsecureUpstreams(config, old.config)
    this.#runtime = next
    this.buffers.limits = limits
    this.clients.max = config.limits.max_requests_per_client_ip ?? null
    for (const a of this.#admission.values()) a.gate.limits = connectionLimits(config.limits)
    // A cache whose store changed is dropped: its Redis connection, if any, is closed.
    if (next.cache !== old.cache) void old.cache.store.close?.()
    const warnings: string[] = []
    const removed = this.listeners.filter((l) => !after.has(l.config.address))
    for (const l of removed) {
      this.#admission.delete(l.server)
      const closing = closeServer(l.server)
      this.#closingListeners.add(closing)
      void closing.then(() => this.#closingListeners.delete(closing))
    }
    const kept = this.listeners.filter((l) => after.has(l.config.address))
    for (const [i, l] of kept.entries()) {
      const lc = config.listeners.find((c) => c.address === l.config.address) as ListenerConfig
      const server = l.server as http.Server
      server.keepAliveTimeout = lc.timeouts.keepalive
      server.headersTimeout = lc.timeouts.header_read
      ;(server as { [SEND_TIMEOUT]?: number })[SEND_TIMEOUT] = lc.timeouts.send
      const admission = this.#admission.get(l.server)
      if (admission) admission.options.bodyIdleMs = lc.timeouts.body_idle
      const loaded = certs.get(lc.address)
      if (loaded && l.certificates && lc.tls) reloadCertificates(l.server as SecureServer, l.certificates, loaded, lc.tls)
      // The secure contexts are rebuilt above: certificates, ciphers and min_version apply now.
      const same = (a: ListenerConfig) => JSON.stringify({ ...a, timeouts: lc.timeouts, access: lc.access, tls: a.tls && { ...a.tls, certificates: lc.tls?.certificates, ciphers: lc.tls?.ciphers, min_version: lc.tls?.min_version } })
      if (same(lc) !== same(l.config)) warnings.push(`listeners: changes to ${lc.address} other than timeouts, access rules, certificates, ciphers and min_version take effect after a restart`)
      kept[i] = { ...l, config: lc }
    }
    this.listeners.splice(0, this.listeners.length, ...kept, ...bound)
    if (JSON.stringify(config.admin) !== JSON.stringify(old.config.admin)) warnings.push('admin: changes take effect after a restart')
    if (JSON.stringify(config.access_log) !== JSON.stringify(old.config.access_log)) warnings.push('access_log: changes take effect after a restart')
    this.#retire(old)
    const summary: ReloadSummary = {
      routes: config.routes.length,
      upstreams: upstreamChanges(old, next),
      listeners: { kept: kept.map((l) => l.config.address), added: bound.map((l) => l.config.address), removed: removed.map((l) => l.config.address) },
      warnings,
    }
    logger.info({ reload: summary }, describeReload(summary))
    for (const w of warnings) logger.warn(w)
    return summary
  }

  /**
   * Re-reads the config through `loadConfig` and applies it. An invalid file is refused
   * with its problems logged; the old config keeps serving. Never throws for a bad config.
   */
  async reloadFromSource(): Promise<ReloadOutcome> {
    if (this.#loadConfig === null) return { ok: false, error: 'this gateway was not started from a config file', problems: [] }
    let config: Config
    try {
      config = await this.#loadConfig()
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err
      logger.error({ problems: err.problems }, `reload refused, the running config keeps serving: ${err.message}`)
      return { ok: false, error: 'invalid config; the running config keeps serving', problems: err.problems }
    }
    try {
      return { ok: true, summary: await this.reload(config) }
    } catch (err) {
      logger.error({ err }, `reload refused, the running config keeps serving: ${(err as Error).message}`)
      return { ok: false, error: (err as Error).message, problems: [] }
    }
  }

  /** Marks `rt` retired; once it has no request in flight, closes its pools no live runtime uses. */
  #retire(rt: Runtime): void {
    if (rt === this.#runtime) return
    this.#retiring.add(rt)
    if ((this.#inFlight.get(rt) ?? 0) > 0) return
    this.#retiring.delete(rt)
    const live = new Set<UpstreamPool>()
    for (const r of [this.#runtime, ...this.#retiring]) for (const p of r.pools.values()) live.add(p)
    void this.#closePools([...rt.pools.values()].filter((p) => !live.has(p)))
    if (rt.filters.redis !== null && ![this.#runtime, ...this.#retiring].some((r) => r.filters.redis === rt.filters.redis)) void rt.filters.redis.close()
  }

  async #closePools(pools: UpstreamPool[]): Promise<void> {
    await Promise.all(pools.filter((p) => !this.#closedPools.has(p)).map(async (p) => {
      this.#closedPools.add(p)
      try {
        await p.close()
      } catch (err) {
        logger.warn({ err, upstream: p.name }, 'closing a retired upstream pool failed')
      }
    }))
  }

  /**
   * Drains and stops, like nginx's graceful shutdown: stops accepting, closes idle
   * keep-alive connections, answers requests still to come on open connections with
   * `Connection: close` (and closes each connection once its response ends), lets
   * in-flight requests finish for up to `drainMs`, then destroys what is left, closes
   * the pools and the admin API, and flushes the access log.
   *
   * @param drainMs longest wait for in-flight requests, in ms (`shutdown.drain_timeout`)
   */
  async stop(drainMs = 0): Promise<void> {
    this.#draining = true
    for (const res of this.#responses) if (!res.headersSent && res.req.httpVersionMajor < 2) res.setHeader('connection', 'close')
    const closing = [...this.listeners.map((l) => closeServer(l.server)), ...this.#closingListeners]
    const adminClosed = this.admin?.close()
    const timer = setTimeout(() => {
      for (const s of this.#sockets) s.destroy()
      for (const u of this.#upgrades) u.destroy()
    }, drainMs)
    await Promise.all(closing)
    clearTimeout(timer)
    await Promise.all([...this.#upgrades].map((u) => u.closed))
    await adminClosed
    const pools = new Set<UpstreamPool>()
    for (const r of [this.#runtime, ...this.#retiring]) for (const p of r.pools.values()) pools.add(p)
    const redis = new Set([this.#runtime, ...this.#retiring].map((r) => r.filters.redis))
    this.#retiring.clear()
    await this.#closePools([...pools])
    for (const r of redis) await r?.close()
    await this.#runtime.cache.store.close?.()
    // Access log lines are written on each response's close event: let those run first.
    await new Promise((resolve) => setImmediate(resolve))
    await this.accessLog.flush()
  }
}

/** The sizes of `buffering` as the buffers take them; temporary files go to `portico` in the system temporary directory by default. */
function bufferLimits(b: BufferingConfig): BufferLimits {
  return {
    memory: b.memory,
    maxTempFile: b.max_temp_file,
    maxMemoryTotal: b.max_memory,
    maxTempTotal: b.max_temp_total,
    tempDir: b.temp_dir ?? path.join(os.tmpdir(), 'portico'),
  }
}

/**
 * Checks that buffering can make temporary files in its directory.
 * @throws {Error} naming `buffering.temp_dir` and the OS error
 */
function checkBufferDir(budget: BufferBudget): void {
  try {
    budget.checkTempDir()
  } catch (err) {
    throw new Error(`buffering.temp_dir ${budget.limits.tempDir} cannot hold temporary files: ${(err as Error).message}`, { cause: err })
  }
}

/** The per-connection bounds of `limits`. */
function connectionLimits(l: ClientLimitsConfig): ConnectionLimits {
  return { maxRequestsPerConnection: l.max_requests_per_connection, maxQueuedPerConnection: l.max_queued_per_connection }
}

/**
 * Stops accepting on `server` and closes its idle connections (HTTP/2 sessions get
 * GOAWAY and finish their open streams); resolves when every connection has closed.
 */
function closeServer(server: http.Server | SecureServer): Promise<void> {
  return new Promise<void>((resolve) => {
    if (!server.listening) return resolve()
    server.close(() => resolve())
    closeIdleConnections(server)
  })
}

/** Closes the idle HTTP/1.1 keep-alive connections of a listener (HTTP/1.1 over an HTTP/2 server too, where Node offers it). */
function closeIdleConnections(server: http.Server | SecureServer): void {
  const s = server as { closeIdleConnections?: () => void }
  if (typeof s.closeIdleConnections === 'function') s.closeIdleConnections()
}

/**
 * Logs a warning for each upstream with `tls.insecure_skip_verify` (at start, and on reload
 * for those that were not insecure before): its endpoints' certificates are not verified.
 */
function warnInsecureUpstreams(config: Config, previous?: Config): void {
  for (const [name, up] of Object.entries(config.upstreams)) {
    if (!up.tls?.insecure_skip_verify || previous?.upstreams[name]?.tls?.insecure_skip_verify) continue
    logger.warn({ upstream: name }, `upstreams.${name}.tls.insecure_skip_verify is true: certificates of its https:// endpoints are not verified, so anyone on the path can impersonate them`)
  }
}

/**
 * The primary process of a cluster (DESIGN §8): supervises N worker processes, which
 * serve every request on listeners they bind themselves with `reusePort` (the kernel
 * spreads connections; the primary is never in the data path). The primary owns the
 * signals, config validation and hand-out, worker restarts, the host-wide state (health
 * checks, outlier verdicts, DNS, cache fetch leases) and the admin API.
 */
import cluster, { type Worker } from 'node:cluster'
import { fileURLToPath } from 'node:url'
import type { Config } from '../config/schema.ts'
import { ConfigError, type ConfigProblem } from '../config/problems.ts'
import { logger } from '../lib/logger.ts'
import { HostLimitTable } from '../protect/rate-limit.ts'
import type { AdminService } from '../server/gateway.ts'
import type { ReloadSummary } from '../server/reload.ts'
import type { StoreEntry } from '../cache/store.ts'
import type { PoolVerdicts } from '../upstream/health/index.ts'
import { HostResolver } from './dns-cache.ts'
import { HostPools } from './host-pools.ts'
import { LeaseTable } from './leases.ts'
import { Requests, plainError, type BoundListener, type Question, type ToPrimary, type ToWorker } from './link.ts'

/**
 * V8 flags of worker processes: a young generation of 4 MB a semi-space. Under a proxy's
 * allocation rate (some 10 KB a request) V8 grows it to about 28 MB and keeps it; capped, a
 * worker holds about 20 MB less under load, which N workers multiply, for 5–10 % more CPU
 * per request (more scavenges; bench/compare.sh). A flag the primary was started with wins.
 */
export const WORKER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4']

/**
 * The workers' `execArgv`: the primary's own, plus {@link WORKER_NODE_FLAGS} it does not set
 * itself on its command line or in `NODE_OPTIONS`.
 */
export function workerExecArgv(own: readonly string[], nodeOptions = process.env.NODE_OPTIONS ?? ''): string[] {
  const name = (f: string) => f.split('=')[0]
  const set = [...own, ...nodeOptions.split(/\s+/).filter(Boolean)]
  // The large first old generation `serve` gives a single process is not for workers.
  const kept = own.filter((a) => a !== SINGLE_PROCESS_ONLY)
  return [...kept, ...WORKER_NODE_FLAGS.filter((f) => !set.some((a) => name(a) === name(f)))]
}

/** The flag `portico serve` adds for a single serving process (src/cli/server-runtime.ts), left out of workers. */
const SINGLE_PROCESS_ONLY = '--initial-old-space-size=64'


/** Platforms whose kernel spreads connections among `SO_REUSEPORT` sockets (Node's `reusePort`). */
const REUSE_PORT_PLATFORMS = new Set(['linux', 'freebsd', 'dragonfly', 'sunos', 'aix'])
/** Longest wait for a worker to start listening, in ms. */
const START_TIMEOUT_MS = 30_000
/** Longest wait for a worker's answer to an admin question or a reload, in ms. */
const ANSWER_TIMEOUT_MS = 10_000
/** A worker that dies sooner than this after its start counts as crashing: its replacement waits (back-off). */
const CRASH_WINDOW_MS = 5_000
/** First and longest back-off before replacing a crashing worker, in ms. */
const BACKOFF_MIN_MS = 100
const BACKOFF_MAX_MS = 10_000

/** Options of a {@link Primary}. */
export interface PrimaryOptions {
  /** How many workers to run (`workers` resolved: `auto` is `os.availableParallelism()`). */
  workers: number
  /**
   * Re-reads the config file for SIGHUP, `portico reload` and `POST /reload`; undefined
   * in quick mode (nothing to reload).
   * @throws {ConfigError} when the file is invalid (nothing changes anywhere)
   */
  loadConfig?: () => Promise<Config>
  /** Makes the host's admin API (src/admin builds it from the primary); none without it. */
  admin?: (primary: Primary) => AdminService
  /** Binds with `reusePort` (default: where the platform supports it); false forces cluster's round-robin hand-off. */
  reusePort?: boolean
}

/** One worker's place: the slot keeps its number across restarts. */
export interface WorkerSlot {
  /** 1-based worker number. */
  readonly slot: number
  worker: Worker | null
  pid: number | null
  /** Epoch ms the current process started. */
  startedAt: number
  /** Whether it listens and serves. */
  ready: boolean
  /** Times replaced after it died. */
  restarts: number
  /** Consecutive quick deaths (for the back-off). */
  crashes: number
  /** The last death: exit code or signal, epoch ms. */
  lastExit: { code: number | null; signal: string | null; at: number } | null
}

/** A worker's answer to a question, or why it gave none. */
export type WorkerAnswer<T> = { slot: number; pid: number; ok: true; value: T } | { slot: number; pid: number; ok: false; error: string }

/** The outcome of a reload of the whole host. */
export type HostReloadOutcome =
  | { ok: true; summary: ReloadSummary; workers: Array<{ slot: number; pid: number; ok: boolean; error?: string }> }
  | {
    ok: false
    /** `config`: the file was refused, nothing changed anywhere; `workers`: some workers did not apply it (listed). */
    refused: 'config' | 'workers'
    error: string
    problems: ConfigProblem[]
    workers: Array<{ slot: number; pid: number; ok: boolean; error?: string }>
  }

interface Running {
  slot: WorkerSlot
  requests: Requests
}

/** The primary process: see the module doc. */
export class Primary {
  #config: Config
  readonly #opts: PrimaryOptions
  readonly slots: WorkerSlot[] = []
  readonly #running = new Map<Worker, Running>()
  readonly resolver = new HostResolver()
  readonly leases = new LeaseTable()
  /** The host's TATs of the `local` rate limits, which every worker's copy follows. */
  readonly limits = new HostLimitTable()
  readonly pools: HostPools
  /** Listener addresses as configured → as bound by the first worker (with reusePort a port 0 becomes the real port, so every worker binds the same). */
  readonly #bound = new Map<string, string>()
  /** Listeners as the first worker bound them. */
  listeners: BoundListener[] = []
  admin: AdminService | null = null
  readonly #reusePort: boolean
  #stopping = false
  #reloads: Promise<unknown> = Promise.resolve()

  constructor(config: Config, opts: PrimaryOptions) {
    this.#config = config
    this.#opts = opts
    this.#reusePort = opts.reusePort ?? REUSE_PORT_PLATFORMS.has(process.platform)
    this.pools = new HostPools(config, this.resolver, (upstream, verdicts) => this.#broadcast({ t: 'verdicts', upstream, verdicts }))
  }

  /** The config in force. */
  get config(): Config {
    return this.#config
  }

  /** How workers bind: `reusePort`, or cluster's round-robin hand-off through the primary. */
  get distribution(): 'reuseport' | 'round-robin' {
    return this.#reusePort ? 'reuseport' : 'round-robin'
  }

  /**
   * Starts the workers: after the primary's check that every listener address can be bound
   * (see `#claimAddresses`), the first worker alone, so that a failure to listen is reported
   * once, then the others together; then the admin API.
   *
   * @throws {Error} when the first worker cannot listen (its message), or a worker does not start
   */
  async start(): Promise<void> {
    // The sources run worker-main.ts; the bundle (dist/, see scripts/build.js) has worker-main.js beside this code.
    const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js'
    cluster.setupPrimary({ exec: fileURLToPath(new URL(`./worker-main${ext}`, import.meta.url)), serialization: 'advanced', execArgv: workerExecArgv(process.execArgv) })
    // Without reusePort, workers' listen() goes through the primary, which hands connections out in turn.
    if (!this.#reusePort) cluster.schedulingPolicy = cluster.SCHED_RR
    cluster.on('exit', (worker, code, signal) => this.#exited(worker, code, signal))
    for (let i = 1; i <= this.#opts.workers; i++) {
      this.slots.push({ slot: i, worker: null, pid: null, startedAt: 0, ready: false, restarts: 0, crashes: 0, lastExit: null })
    }
    logger.info({ workers: this.#opts.workers, distribution: this.distribution }, this.#reusePort
      ? `starting ${this.#opts.workers} workers; each listens with reusePort, the kernel spreads connections`
      : `starting ${this.#opts.workers} workers; reusePort is not available on ${process.platform}: the primary hands connections to workers in turn (cluster round-robin)`)
    // Cluster's round-robin hand-off shares one handle per configured address, port 0 included.
    if (this.#reusePort) await this.#claimAddresses(this.#config)
    this.listeners = await this.#fork(this.slots[0])
    await Promise.all(this.slots.slice(1).map((s) => this.#fork(s)))
    const admin = this.#config.admin
    if (admin && this.#opts.admin) {
      this.admin = this.#opts.admin(this)
      const { host, port } = splitAddress(admin.address)
      await this.admin.listen(host, port)
    }
  }

  /**
   * Binds each listener address not bound yet once without `reusePort`, then lets it go: a port another
   * program holds (another Portico with `reusePort` included, which the workers' own binds
   * would silently share) fails here, and a port 0 becomes a real port every worker binds.
   *
   * @throws {Error} EADDRINUSE, EACCES: the address cannot be bound
   */
  async #claimAddresses(config: Config): Promise<void> {
    const net = await import('node:net')
    for (const l of config.listeners) {
      // Addresses the workers hold already are theirs.
      if (this.#bound.has(l.address)) continue
      const { host, port } = splitAddress(l.address)
      const probe = net.createServer()
      await new Promise<void>((resolve, reject) => {
        probe.once('error', reject)
        probe.listen({ host, port, exclusive: true }, () => resolve())
      })
      const bound = (probe.address() as { port: number }).port
      await new Promise<void>((resolve) => probe.close(() => resolve()))
      this.#bound.set(l.address, `${host.includes(':') ? `[${host}]` : host}:${bound}`)
    }
  }

  /** `config` with each listener address as bound (port 0 replaced by the real port). */
  #forWorkers(config: Config): Config {
    if (this.#bound.size === 0) return config
    return { ...config, listeners: config.listeners.map((l) => ({ ...l, address: this.#bound.get(l.address) ?? l.address })) }
  }

  /** Forks the process of `slot` and resolves once it listens. @throws {Error} when it fails to start */
  #fork(slot: WorkerSlot): Promise<BoundListener[]> {
    const worker = cluster.fork({ PORTICO_WORKER: String(slot.slot) })
    const sent = this.#config
    const requests = new Requests(worker)
    slot.worker = worker
    slot.pid = worker.process.pid ?? null
    slot.startedAt = Date.now()
    slot.ready = false
    this.#running.set(worker, { slot, requests })
    // A message sent as the channel closes fails here, not as an uncaught error: the exit handler replaces the worker.
    worker.on('error', (err: Error) => logger.warn({ worker: slot.slot, err: err.message }, `worker ${slot.slot}: ${err.message}`))
    return new Promise<BoundListener[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`worker ${slot.slot} (pid ${slot.pid}) did not start listening within ${START_TIMEOUT_MS}ms`))
        // A worker stuck in its start is killed; the exit handler replaces it.
        worker.process.kill('SIGKILL')
      }, START_TIMEOUT_MS)
      timer.unref()
      worker.on('message', (m: ToPrimary) => {
        switch (m.t) {
          case 'ready':
            clearTimeout(timer)
            slot.ready = true
            logger.info({ worker: slot.slot, pid: slot.pid }, `worker ${slot.slot} (pid ${slot.pid}) is serving`)
            // A reload while it started did not ask it: it gets the config in force now.
            if (sent !== this.#config) {
              requests.send({ t: 'ask', question: { q: 'reload', config: this.#forWorkers(this.#config) } satisfies Question }, ANSWER_TIMEOUT_MS)
                .catch((err: Error) => logger.error({ worker: slot.slot, err: err.message }, `worker ${slot.slot} did not take the config reloaded while it started: ${err.message}`))
            }
            resolve(m.listeners)
            break
          case 'failed':
            clearTimeout(timer)
            reject(new Error(m.message))
            break
          default:
            this.#message(slot, worker, requests, m)
        }
      })
      worker.once('exit', () => {
        clearTimeout(timer)
        reject(new Error(`worker ${slot.slot} exited before it was ready`))
      })
      const start: ToWorker = { t: 'start', config: this.#forWorkers(sent), bind: { reusePort: this.#reusePort, exclusive: this.#reusePort }, slot: slot.slot }
      worker.send(start)
      // The verdicts known now, so a new worker starts with the host's view.
      for (const [upstream, verdicts] of this.pools.verdicts()) worker.send({ t: 'verdicts', upstream, verdicts } satisfies ToWorker)
    })
  }

  /** Handles a worker's message other than ready/failed. */
  #message(slot: WorkerSlot, worker: Worker, requests: Requests, m: ToPrimary): void {
    switch (m.t) {
      case 'answer': requests.answer(m); break
      case 'facts': this.pools.observe(m.facts); break
      case 'admitted': {
        // Every worker, the sender included, takes the keys' new TATs: one limit for the host.
        const tats = this.limits.admit(m.admitted)
        if (tats.length > 0) this.#broadcast({ t: 'limits', tats })
        break
      }
      case 'dns': {
        const reply = (value: unknown, error?: unknown): void => {
          if (!worker.isConnected()) return
          worker.send(error === undefined ? { t: 'answer', id: m.id, value } : { t: 'answer', id: m.id, error: plainError(error) })
        }
        if (m.kind === 'lookup') reply(null, new Error('lookup is not answered by the primary'))
        else this.resolver.resolve(m.kind, m.host, m.servers ?? undefined, m.timeoutMs).then((v) => reply(v), (err) => reply(null, err))
        break
      }
      case 'lease':
        this.leases.request(slot.slot, m.key, m.waitMs, (value) => {
          if (worker.isConnected()) worker.send({ t: 'answer', id: m.id, value } satisfies ToWorker)
        })
        break
      case 'release': {
        const waiters = this.leases.release(slot.slot, m.key)
        if (waiters.length === 0) break
        if (!m.stored) {
          this.leases.fill(waiters, undefined)
          break
        }
        // Somebody waits: fetch the stored response from the holder, once for all of them.
        requests.send<StoreEntry | undefined>({ t: 'ask', question: { q: 'entry', key: m.key } satisfies Question }, ANSWER_TIMEOUT_MS)
          .then((entry) => this.leases.fill(waiters, entry), () => this.leases.fill(waiters, undefined))
        break
      }
    }
  }

  #exited(worker: Worker, code: number | null, signal: string | null): void {
    const running = this.#running.get(worker)
    if (running === undefined) return
    this.#running.delete(worker)
    const { slot, requests } = running
    requests.close(`worker ${slot.slot} exited`)
    this.leases.releaseAll(slot.slot)
    slot.ready = false
    slot.worker = null
    const at = Date.now()
    slot.lastExit = { code, signal, at }
    if (this.#stopping) return
    const cause = signal !== null ? `signal ${signal}` : `exit code ${code}`
    slot.crashes = at - slot.startedAt < CRASH_WINDOW_MS ? slot.crashes + 1 : 0
    // The first quick death is replaced at once; each next one in a row waits twice as long.
    const delay = slot.crashes <= 1 ? 0 : Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (slot.crashes - 2))
    logger.error({ worker: slot.slot, pid: slot.pid, code, signal, restart_in_ms: delay }, `worker ${slot.slot} (pid ${slot.pid}) died (${cause}); replacing it${delay > 0 ? ` in ${delay}ms (it keeps dying)` : ''}`)
    const timer = setTimeout(() => {
      if (this.#stopping) return
      slot.restarts++
      this.#fork(slot).catch((err: Error) => logger.error({ worker: slot.slot, err: err.message }, `worker ${slot.slot} could not be started: ${err.message}`))
    }, delay)
    timer.unref()
  }

  #broadcast(m: ToWorker): void {
    for (const w of this.#running.keys()) if (w.isConnected()) w.send(m)
  }

  /**
   * Asks every serving worker the same question, in parallel.
   *
   * @returns one answer per serving worker, in slot order; a worker that fails or does not
   *   answer in time has `ok: false` and why
   */
  async ask<T>(question: Question, timeoutMs = ANSWER_TIMEOUT_MS): Promise<Array<WorkerAnswer<T>>> {
    const running = [...this.#running.values()].filter((r) => r.slot.ready).sort((a, b) => a.slot.slot - b.slot.slot)
    return Promise.all(running.map(async ({ slot, requests }): Promise<WorkerAnswer<T>> => {
      const pid = slot.pid ?? 0
      try {
        return { slot: slot.slot, pid, ok: true, value: await requests.send<T>({ t: 'ask', question }, timeoutMs) }
      } catch (err) {
        return { slot: slot.slot, pid, ok: false, error: (err as Error).message }
      }
    }))
  }

  /**
   * Applies `config` everywhere: the primary's pools, then every worker (in parallel).
   * Resolves when every worker has answered: ok when all applied it, else which did not
   * and why. Reloads run one at a time; a worker started later gets the new config.
   */
  reload(config: Config): Promise<HostReloadOutcome> {
    const run = this.#reloads.then(async (): Promise<HostReloadOutcome> => {
      // A new listener address another program holds refuses the reload before anything changes.
      if (this.#reusePort) {
        try {
          await this.#claimAddresses(config)
        } catch (err) {
          const error = `cannot listen: ${(err as Error).message}; the running config keeps serving`
          logger.error(`reload refused: ${error}`)
          return { ok: false, refused: 'config', error, problems: [], workers: [] }
        }
      }
      const previous = this.#config
      this.#config = config
      this.pools.apply(config)
      const answers = await this.ask<ReloadSummary>({ q: 'reload', config: this.#forWorkers(config) })
      const workers = answers.map((a) => (a.ok ? { slot: a.slot, pid: a.pid, ok: true } : { slot: a.slot, pid: a.pid, ok: false, error: a.error }))
      const failed = answers.filter((a) => !a.ok)
      const first = answers.find((a) => a.ok)
      if (failed.length > 0 || first === undefined || !first.ok) {
        const error = failed.length > 0
          ? `not applied by ${failed.map((a) => `worker ${a.slot} (pid ${a.pid}): ${a.ok ? '' : a.error}`).join('; ')}`
          : 'no worker is serving'
        logger.error({ workers }, `reload: ${error}`)
        return { ok: false, refused: 'workers', error, problems: [], workers }
      }
      const summary = first.value
      if (JSON.stringify(config.workers) !== JSON.stringify(previous.workers)) {
        const w = 'workers: changes take effect after a restart'
        logger.warn(w)
        summary.warnings = [...summary.warnings, w]
      }
      return { ok: true, summary, workers }
    })
    this.#reloads = run.catch(() => {})
    return run
  }

  /**
   * Re-reads the config file once, here, and reloads every worker with it. A refused file
   * changes nothing anywhere; its problems are logged and returned. Never throws for a bad config.
   */
  async reloadFromSource(): Promise<HostReloadOutcome> {
    const workers: Array<{ slot: number; pid: number; ok: boolean }> = []
    if (this.#opts.loadConfig === undefined) return { ok: false, refused: 'config', error: 'this instance was not started from a config file', problems: [], workers }
    let config: Config
    try {
      config = await this.#opts.loadConfig()
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err
      logger.error({ problems: err.problems }, `reload refused, the running config keeps serving: ${err.message}`)
      return { ok: false, refused: 'config', error: 'invalid config; the running config keeps serving', problems: err.problems, workers }
    }
    return this.reload(config)
  }

  /**
   * Drains every worker in parallel (each stops accepting, finishes its requests for up to
   * `drainMs`, flushes its access log and exits), then stops the admin API and the pools.
   * A worker still there `drainMs` + 5 s later is killed.
   */
  async stop(drainMs: number): Promise<void> {
    this.#stopping = true
    const exits = [...this.#running.keys()].map((w) => new Promise<void>((resolve) => {
      if (w.isDead()) return resolve()
      w.once('exit', () => resolve())
      const kill = setTimeout(() => w.process.kill('SIGKILL'), drainMs + 5000)
      kill.unref()
      w.once('exit', () => clearTimeout(kill))
      try {
        w.send({ t: 'stop', drainMs } satisfies ToWorker)
      } catch {
        w.process.kill('SIGTERM')
      }
    }))
    await Promise.all([...exits, this.admin?.close()])
    await this.pools.close()
    this.resolver.close()
  }

  /** Whether a stop has begun. */
  get stopping(): boolean {
    return this.#stopping
  }
}

/** Splits `host:port` / `[v6]:port` (the server folder's `splitAddress`, without loading the request path). */
function splitAddress(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(address)
  if (!m) throw new Error(`invalid address "${address}": expected host:port`)
  return { host: m[1] ?? m[2], port: Number(m[3]) }
}

export { workerCount } from './count.ts'

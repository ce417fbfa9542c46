/**
 * A worker process: runs the whole request lifecycle (a Gateway) on listeners it binds
 * itself with `reusePort`, and takes part in the host's shared state through its primary:
 * try failures go up as facts, health verdicts come down and are applied; names are
 * resolved by the primary (once per host); cache misses ask the primary for the fetch
 * lease of their key; local rate limits report admissions and follow the host's counts.
 * Nothing on the request path waits for the primary except a cache miss waiting for
 * another worker's fetch of the same URL.
 */
import type { Config } from '../config/schema.ts'
import { cacheView, purge } from '../cache/admin.ts'
import type { HttpCache, SharedCollapse } from '../cache/cache.ts'
import type { StoreEntry } from '../cache/store.ts'
import { logger } from '../lib/logger.ts'
import { createAccessLog } from '../observe/access-log.ts'
import { attemptStateOf } from '../proxy/attempt.ts'
import { Gateway } from '../server/gateway.ts'
import type { NameResolver } from '../upstream/dns.ts'
import { fedHealth, type HealthFeed, type PoolVerdicts } from '../upstream/health/index.ts'
import type { HostLimitFeed, LocalStore } from '../protect/rate-limit.ts'
import { Requests, plainError, type Admission, type BoundListener, type Fact, type HostTat, type Question, type ToPrimary, type ToWorker } from './link.ts'

/** Longest wait for the primary's answer to a DNS question, beyond the query's own timeout, in ms. */
const DNS_SLACK_MS = 1000

/** One endpoint's counters in a worker, as the primary sums them for `GET /upstreams`. */
export interface EndpointStats {
  label: string
  inFlight: number
  requests: number
  lastError: { type: string; at: number; detail: string } | null
  connections: { connected: number; free: number; pending: number; running: number }
}

/** A worker's answer to `stats`: its pid and, per upstream, the retry counts and endpoint counters. */
export interface WorkerStats {
  pid: number
  upstreams: Array<{ name: string; retries: { another_endpoint: number; fresh_connection: number; budget_exhausted: number; active: number; retrying: number }; endpoints: EndpointStats[] }>
}

/** Ignores the error of a message sent as the channel closes. */
const ignore = (): void => {}

function send(m: ToPrimary): void {
  try {
    process.send?.(m, undefined, undefined, ignore)
  } catch {
    // The channel closed: the primary is gone and the 'disconnect' handler stops this worker.
  }
}

/**
 * Items batched per turn of the event loop and sent as one message however many were
 * added meanwhile (the facts of failed tries, the rate-limit admissions).
 */
class TurnBatch<T> {
  #items: T[] = []
  #scheduled = false
  readonly #send: (items: T[]) => void

  constructor(send: (items: T[]) => void) {
    this.#send = send
  }

  add(item: T): void {
    this.#items.push(item)
    if (this.#scheduled) return
    this.#scheduled = true
    setImmediate(this.#flush)
  }

  readonly #flush = (): void => {
    this.#scheduled = false
    const items = this.#items
    this.#items = []
    this.#send(items)
  }
}

/**
 * The rate-limit feed of a worker: its admissions to the primary, batched per turn of the
 * event loop; the host's TATs from the primary to each local limit's store.
 */
class LimitFeed implements HostLimitFeed {
  readonly #admitted = new TurnBatch<Admission>((admitted) => send({ t: 'admitted', admitted }))
  readonly #stores = new Map<string, LocalStore>()

  admitted(id: string, key: string, intervalMs: number, at: number): void {
    this.#admitted.add([id, key, intervalMs, at])
  }

  subscribe(id: string, store: LocalStore): void {
    this.#stores.set(id, store)
  }

  /** Applies the host's TATs the primary sent. */
  apply(tats: HostTat[]): void {
    for (const [id, key, tat] of tats) this.#stores.get(id)?.apply(key, tat)
  }
}

/** The health feed of a worker: facts to the primary, verdicts from it. */
function workerFeed(batch: TurnBatch<Fact>, subscribers: Map<string, Set<(v: PoolVerdicts) => void>>, latest: Map<string, PoolVerdicts>): HealthFeed {
  return {
    report: (upstream, endpoint, failure, status) => batch.add([upstream, endpoint, failure, status]),
    subscribe(upstream, apply) {
      let set = subscribers.get(upstream)
      if (set === undefined) subscribers.set(upstream, set = new Set())
      set.add(apply)
      const known = latest.get(upstream)
      if (known !== undefined) apply(known)
      return () => { set.delete(apply) }
    },
  }
}

/** A resolver whose questions the primary answers from its host-wide cache. */
function primaryResolver(requests: Requests, servers: readonly string[] | undefined, timeoutMs: number): NameResolver {
  const ask = (kind: 'A' | 'AAAA', host: string) =>
    requests.send<{ address: string; ttl: number }[]>({ t: 'dns', kind, host, servers: servers === undefined ? null : [...servers], timeoutMs }, timeoutMs * 2 + DNS_SLACK_MS)
  return { resolve4: (host) => ask('A', host), resolve6: (host) => ask('AAAA', host) }
}

/** Collapsing across workers: the fetch lease of a key comes from the primary. */
class LeaseClient implements SharedCollapse {
  readonly #requests: Requests
  readonly #cache: () => HttpCache
  /** Keys whose lease this worker holds. */
  readonly #held = new Set<string>()

  constructor(requests: Requests, cache: () => HttpCache) {
    this.#requests = requests
    this.#cache = cache
  }

  async acquire(key: string, waitMs: number): Promise<boolean> {
    let answer: { granted: boolean; entry?: StoreEntry }
    try {
      answer = await this.#requests.send({ t: 'lease', key, waitMs }, waitMs + DNS_SLACK_MS)
    } catch {
      return false
    }
    if (answer.granted) {
      this.#held.add(key)
      return false
    }
    if (answer.entry === undefined) return false
    await this.#cache().store.put(key, reviveEntry(answer.entry))
    return true
  }

  release(key: string, stored: boolean): void {
    if (!this.#held.delete(key)) return
    send({ t: 'release', key, stored })
  }
}

/** Bodies arrive as Uint8Arrays or Buffers depending on the serializer: the store keeps Buffers. */
function reviveEntry(e: StoreEntry): StoreEntry {
  return { variants: e.variants.map((v) => ({ ...v, body: v.body.map((b) => Buffer.isBuffer(b) ? b : Buffer.from((b as Uint8Array).buffer, (b as Uint8Array).byteOffset, (b as Uint8Array).byteLength)) })) }
}

/** What a worker answers to `stats`. */
function statsOf(gw: Gateway): WorkerStats {
  return {
    pid: process.pid,
    upstreams: [...gw.runtime.pools.values()].map((p) => {
      const r = attemptStateOf(p).retry
      return {
        name: p.name,
        retries: { ...r.counts, active: r.active, retrying: r.retrying },
        endpoints: p.endpoints.map((e) => {
          const s = e.dispatcher.stats
          return { label: e.label, inFlight: e.inFlight, requests: e.requests, lastError: e.lastError, connections: { connected: s.connected, free: s.free, pending: s.pending, running: s.running } }
        }),
      }
    }),
  }
}

/**
 * Runs this process as a worker: waits for the primary's `start` (the config to serve and
 * how to bind), starts the gateway, says `ready` with the bound ports (or `failed`), then
 * serves the primary's questions until `stop` (drain, flush the access log, exit 0) or
 * until the primary goes away (the same).
 */
export async function runWorker(): Promise<void> {
  const batch = new TurnBatch<Fact>((facts) => send({ t: 'facts', facts }))
  const limits = new LimitFeed()
  const subscribers = new Map<string, Set<(v: PoolVerdicts) => void>>()
  const latest = new Map<string, PoolVerdicts>()
  const requests = new Requests({ send: (m, cb) => process.send!(m, undefined, undefined, cb) })
  let gw: Gateway | null = null
  let stopping: Promise<void> | null = null
  let onStart: (m: Extract<ToWorker, { t: 'start' }>) => void = () => {}
  const started = new Promise<Extract<ToWorker, { t: 'start' }>>((resolve) => { onStart = resolve })

  const stop = (drainMs: number): Promise<void> => stopping ??= (async () => {
    if (gw !== null) await gw.stop(drainMs)
    await new Promise<void>((resolve) => logger.flush(() => resolve()))
    process.exit(0)
  })()

  const answer = async (id: number, question: Question): Promise<void> => {
    try {
      const value = await answerQuestion(gw, question)
      send({ t: 'answer', id, value })
    } catch (err) {
      send({ t: 'answer', id, error: plainError(err) })
    }
  }

  process.on('message', (m: ToWorker) => {
    switch (m.t) {
      case 'start': onStart(m); break
      case 'answer': requests.answer(m); break
      case 'verdicts': {
        latest.set(m.upstream, m.verdicts)
        for (const apply of subscribers.get(m.upstream) ?? []) apply(m.verdicts)
        break
      }
      case 'limits': limits.apply(m.tats); break
      case 'ask': void answer(m.id, m.question); break
      case 'stop': void stop(m.drainMs); break
    }
  })
  // The primary owns the signals: a terminal's SIGINT reaches the whole group, so drain on it;
  // SIGHUP is the primary's reload.
  process.on('SIGHUP', () => {})
  process.once('SIGINT', () => void stop(gw?.runtime.config.shutdown.drain_timeout ?? 0))
  process.once('SIGTERM', () => void stop(gw?.runtime.config.shutdown.drain_timeout ?? 0))
  process.once('disconnect', () => {
    requests.close('the primary process is gone')
    logger.warn('the primary process is gone: draining and stopping')
    void stop(gw?.runtime.config.shutdown.drain_timeout ?? 0)
  })

  const start = await started
  // Every line of this process's log says which worker wrote it.
  logger.setBindings({ worker: start.slot, pid: process.pid })
  const leases = new LeaseClient(requests, () => gw!.runtime.cache)
  const feed = workerFeed(batch, subscribers, latest)
  const log = start.config.access_log
  gw = new Gateway(start.config, {
    bind: start.bind,
    // Workers share standard output: writes of at most PIPE_BUF bytes keep lines whole.
    accessLog: createAccessLog(log.format, log.path, { worker: start.slot, ...(log.path === '-' ? { bufferBytes: 4096 } : {}) }),
    pools: { resolverFactory: (servers, timeoutMs) => primaryResolver(requests, servers, timeoutMs), health: fedHealth(feed) },
    limits,
  })
  gw.runtime.cache.shared = leases
  try {
    await gw.start()
  } catch (err) {
    send({ t: 'failed', message: (err as Error).message })
    await gw.stop(0)
    process.exit(1)
  }
  const listeners: BoundListener[] = gw.listeners.map((l) => ({ configured: l.config.address, port: l.address.port, family: l.address.family, address: l.address.address, tls: l.config.tls !== undefined }))
  send({ t: 'ready', listeners })
}

/** Answers one question of the primary. */
async function answerQuestion(gw: Gateway | null, q: Question): Promise<unknown> {
  if (gw === null) throw new Error('the worker has not started')
  switch (q.q) {
    case 'reload': {
      const shared = gw.runtime.cache.shared
      const summary = await gw.reload(q.config as Config)
      // A reload that changes `cache` builds a new cache: it collapses across workers too.
      gw.runtime.cache.shared = shared
      return summary
    }
    case 'stats': return statsOf(gw)
    case 'failures': return { pid: process.pid, total: gw.failures.total, failures: gw.failures.list() }
    case 'metrics': return gw.metrics.registry.getMetricsAsJSON()
    case 'live': return gw.live.export()
    // The response this worker fetched under a lease, for the workers that waited for it.
    case 'entry': return gw.runtime.cache.store.get(q.key)
    case 'purge': return purge(gw.runtime.cache, q.body)
    case 'cache': return cacheView(gw.runtime.cache)
  }
}

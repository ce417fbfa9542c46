/**
 * Active health checks: one timer loop per endpoint probes it (HTTP GET or TCP connect)
 * and consecutive results flip it down or up, as HAProxy's `fall`/`rise` and Pingora's
 * health check thresholds do.
 */
import type { HealthCheckConfig } from '../../config/schema.ts'
import { logger } from '../../lib/logger.ts'
import type { Endpoint } from '../endpoint.ts'
import { startProbe, type ProbeResult, type RunningProbe } from './probe.ts'
import { setDownReason } from './reason.ts'

/** A change of an endpoint's active health state, as logged once. */
export interface HealthTransition {
  /** Upstream (pool) name. */
  upstream: string
  /** `host:port` of the endpoint. */
  endpoint: string
  state: 'up' | 'down'
  /** For `down`: the RFC 9209 type, or the words (`unexpected status 503`) when the endpoint answered; null for `up`. */
  reason: string | null
  /** For `down`: the failing check's detail; null for `up`. */
  detail: string | null
  /** Epoch ms. */
  at: number
}

/** The endpoints a checker probes and the name it logs them under. */
export interface CheckedPool {
  readonly name: string
  readonly endpoints: readonly Endpoint[]
}

/** The check loop of one endpoint. */
interface Loop {
  readonly endpoint: Endpoint
  /** Consecutive passing / failing checks (one of the two is always 0). */
  passes: number
  failures: number
  /** Probes started so far. */
  probes: number
  timer: NodeJS.Timeout | null
  running: RunningProbe | null
  /** The running probe's result, for stop() to wait on. */
  pending: Promise<void> | null
  /** Set when the endpoint left the pool: nothing more is counted or scheduled. */
  removed: boolean
}

/** A check loop for an endpoint not probed yet. */
function newLoop(endpoint: Endpoint): Loop {
  return { endpoint, passes: 0, failures: 0, probes: 0, timer: null, running: null, pending: null, removed: false }
}

/**
 * The random extra wait added to an interval, in ms: up to `jitter` (a duration), or up
 * to that percentage of `interval` (Envoy `interval_jitter` / `interval_jitter_percent`).
 */
export function jitterMs(cfg: Pick<HealthCheckConfig, 'interval' | 'jitter'>, random = Math.random): number {
  const span = cfg.jitter.unit === '%' ? (cfg.interval * cfg.jitter.value) / 100 : cfg.jitter.value
  return Math.round(random() * span)
}

/**
 * Probes every endpoint of a pool on its own unref'd timer until {@link stop}.
 *
 * Timing: the first probe of an endpoint starts after a random wait of up to the jitter,
 * each next one `interval` + a random jitter after the previous one *started* (at once
 * when a slow probe overran that). So an endpoint that stops answering is down after at
 * most `unhealthy_threshold` × (`interval` + jitter) + `timeout` ms.
 *
 * State: endpoints start up (`healthy` true, as HAProxy does); `unhealthy_threshold`
 * failing checks in a row mark one down, with `downReason` the RFC 9209 type a request
 * would have got (`destination_unavailable` when it answered with a status outside
 * `expected_status`); `healthy_threshold` passing checks in a row bring it back up and
 * clear the reason. Each transition is logged once (warn when down, info when up) with
 * `upstream`, `endpoint`, `state`, `reason` and `detail`.
 */
export class ActiveHealthChecker {
  readonly pool: CheckedPool
  readonly config: HealthCheckConfig
  /** Called with every probe's result and its start (epoch ms); outlier detection listens here. */
  onProbe: ((endpoint: Endpoint, result: ProbeResult, startedAt: number) => void) | null = null
  /** Called once per state change, after it is logged. */
  onTransition: ((t: HealthTransition) => void) | null = null
  readonly #loops: Loop[]
  #started = false
  #stopped = false

  constructor(pool: CheckedPool, config: HealthCheckConfig) {
    this.pool = pool
    this.config = config
    this.#loops = pool.endpoints.map(newLoop)
  }

  /** Schedules the first probe of every endpoint. Idempotent; no-op after stop(). */
  start(): void {
    if (this.#stopped) return
    this.#started = true
    for (const loop of this.#loops) {
      if (loop.timer === null && loop.running === null) this.#schedule(loop, jitterMs(this.config))
    }
  }

  /**
   * Starts checking an endpoint that joined the pool (a new address of a resolved name):
   * it starts up, and its first probe comes after a random wait of up to the jitter, as
   * at start. No-op for an endpoint already checked, and after stop().
   */
  add(endpoint: Endpoint): void {
    if (this.#stopped || this.#loops.some((l) => l.endpoint === endpoint)) return
    const loop = newLoop(endpoint)
    this.#loops.push(loop)
    if (this.#started) this.#schedule(loop, jitterMs(this.config))
  }

  /** Stops checking an endpoint that left the pool; resolves once its probe in flight, if any, has closed its socket. */
  async remove(endpoint: Endpoint): Promise<void> {
    const i = this.#loops.findIndex((l) => l.endpoint === endpoint)
    if (i < 0) return
    const [loop] = this.#loops.splice(i, 1)
    loop.removed = true
    if (loop.timer !== null) clearTimeout(loop.timer)
    loop.timer = null
    loop.running?.cancel()
    await loop.pending
  }

  /** Probes started so far against `endpoint` (0 for an endpoint of another pool). */
  probes(endpoint: Endpoint): number {
    return this.#loops.find((l) => l.endpoint === endpoint)?.probes ?? 0
  }

  /** Timers pending plus probes in flight; 0 once stop() resolved. */
  get activeHandles(): number {
    return this.#loops.reduce((n, l) => n + (l.timer !== null ? 1 : 0) + (l.running !== null ? 1 : 0), 0)
  }

  /** Clears every timer, cancels probes in flight and resolves once their sockets are closed. */
  async stop(): Promise<void> {
    this.#stopped = true
    const pending: Promise<void>[] = []
    for (const loop of this.#loops) {
      if (loop.timer !== null) clearTimeout(loop.timer)
      loop.timer = null
      loop.running?.cancel()
      if (loop.pending !== null) pending.push(loop.pending)
    }
    await Promise.all(pending)
  }

  #schedule(loop: Loop, delayMs: number): void {
    loop.timer = setTimeout(() => {
      loop.timer = null
      this.#probe(loop)
    }, Math.max(0, delayMs))
    loop.timer.unref()
  }

  #probe(loop: Loop): void {
    const startedAt = Date.now()
    const running = loop.running = startProbe(loop.endpoint, this.config)
    loop.probes++
    loop.pending = running.result.then((result) => {
      loop.running = null
      loop.pending = null
      if (this.#stopped || loop.removed) return
      this.#count(loop, result)
      this.onProbe?.(loop.endpoint, result, startedAt)
      this.#schedule(loop, startedAt + this.config.interval + jitterMs(this.config) - Date.now())
    })
  }

  /** Applies one result to the rise/fall counters and flips the state at a threshold. */
  #count(loop: Loop, result: ProbeResult): void {
    const ep = loop.endpoint
    if (result.ok) {
      loop.failures = 0
      loop.passes++
      if (!ep.healthy && loop.passes >= this.config.healthy_threshold) {
        ep.healthy = true
        setDownReason(ep, 'active', null)
        this.#transition(ep, 'up', null, null)
      }
      return
    }
    loop.passes = 0
    loop.failures++
    const reason = { type: result.type ?? 'destination_unavailable', detail: result.detail } as const
    if (ep.healthy && loop.failures >= this.config.unhealthy_threshold) {
      ep.healthy = false
      setDownReason(ep, 'active', reason)
      this.#transition(ep, 'down', result.type ?? result.detail, result.detail)
    } else if (!ep.healthy) {
      // Still down: keep the reason current without logging again.
      setDownReason(ep, 'active', reason)
    }
  }

  #transition(ep: Endpoint, state: 'up' | 'down', reason: string | null, detail: string | null): void {
    const t: HealthTransition = { upstream: this.pool.name, endpoint: ep.label, state, reason, detail, at: Date.now() }
    const fields = { upstream: t.upstream, endpoint: t.endpoint, state, reason, detail }
    if (state === 'down') logger.warn(fields, `endpoint ${ep.label} of upstream ${t.upstream} is down: ${reason}`)
    else logger.info(fields, `endpoint ${ep.label} of upstream ${t.upstream} is up`)
    this.onTransition?.(t)
  }
}

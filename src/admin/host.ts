/**
 * The admin API of a cluster primary: the whole host's view (DESIGN §8). Health, ejections
 * and name resolution come from the primary, which decides them for every worker; counters
 * (in flight, requests, connections, retries) are summed over the workers, each endpoint
 * also listing them per worker; `/failures` merges the workers' rings by time; `/metrics`
 * aggregates every worker's registry in one scrape (prom-client `AggregatorRegistry`).
 */
import { AggregatorRegistry, Gauge } from 'prom-client'

/** One worker's `registry.getMetricsAsJSON()`, as `AggregatorRegistry.aggregate` takes it. */
type MetricsJson = Parameters<typeof AggregatorRegistry.aggregate>[0][number]
import type { HostReloadOutcome, Primary } from '../cluster/primary.ts'
import type { WorkerStats } from '../cluster/worker.ts'
import type { FailureRecord } from '../observe/failures.ts'
import { FAILURE_RING_SIZE } from '../observe/failures.ts'
import { mergeLiveExports, type LiveExport } from '../observe/live.ts'
import { upstreamsView, type AdminView, type Reply } from './server.ts'
import type { StatsSource } from './stats.ts'
import type { CacheView } from '../cache/admin.ts'

/** A worker's share of one endpoint in `GET /upstreams`. */
export interface WorkerShare {
  worker: number
  pid: number
  in_flight: number
  requests: number
}

/** The `GET /upstreams` body of the host: the primary's pools, with the workers' counters summed. */
export function hostUpstreamsView(primary: Primary, answers: Array<{ slot: number; pid: number; value: WorkerStats }>): unknown {
  const view = upstreamsView({ pools: primary.pools.pools })
  for (const u of view.upstreams) {
    // Every count a worker reports is summed, whatever counts it has.
    const retries: Record<string, number> = {}
    for (const ep of u.endpoints) {
      const shares: WorkerShare[] = []
      ep.in_flight = 0
      ep.requests = 0
      ep.connections = { connected: 0, free: 0, pending: 0, running: 0 }
      let lastAt = -1
      ep.last_error = null
      for (const a of answers) {
        const s = a.value.upstreams.find((x) => x.name === u.name)?.endpoints.find((e) => e.label === ep.address)
        if (s === undefined) continue
        ep.in_flight += s.inFlight
        ep.requests += s.requests
        for (const k of ['connected', 'free', 'pending', 'running'] as const) ep.connections[k] += s.connections[k]
        if (s.lastError !== null && s.lastError.at > lastAt) {
          lastAt = s.lastError.at
          ep.last_error = { type: s.lastError.type, at: new Date(s.lastError.at).toISOString(), detail: s.lastError.detail }
        }
        shares.push({ worker: a.slot, pid: a.pid, in_flight: s.inFlight, requests: s.requests })
      }
      ;(ep as typeof ep & { workers: WorkerShare[] }).workers = shares
    }
    for (const a of answers) {
      const r = a.value.upstreams.find((x) => x.name === u.name)?.retries
      if (r !== undefined) for (const [k, v] of Object.entries(r)) retries[k] = (retries[k] ?? 0) + (v as number)
    }
    Object.assign(u.retries, retries)
  }
  return view
}

/** Answers of the workers that answered; the others are listed as `unanswered` in the bodies. */
function answered<T>(answers: Awaited<ReturnType<Primary['ask']>>): Array<{ slot: number; pid: number; value: T }> {
  return answers.flatMap((a) => (a.ok ? [{ slot: a.slot, pid: a.pid, value: a.value as T }] : []))
}

function unanswered(answers: Awaited<ReturnType<Primary['ask']>>): Array<{ worker: number; pid: number; error: string }> {
  return answers.flatMap((a) => (a.ok ? [] : [{ worker: a.slot, pid: a.pid, error: a.error }]))
}

/** The workers' failure rings merged by time (oldest first), each failure with its worker, at most one ring's capacity. */
async function mergedFailures(primary: Primary): Promise<{ total: number; capacity: number; failures: Array<FailureRecord & { worker: number }> }> {
  const answers = answered<{ total: number; failures: FailureRecord[] }>(await primary.ask({ q: 'failures' }))
  const merged = answers
    .flatMap((a) => a.value.failures.map((f) => ({ ...f, worker: a.slot })))
    .sort((x, y) => (x.ts < y.ts ? -1 : x.ts > y.ts ? 1 : 0))
  return { total: answers.reduce((n, a) => n + a.value.total, 0), capacity: FAILURE_RING_SIZE, failures: merged.slice(-FAILURE_RING_SIZE) }
}

/** The workers' live statistics rings summed (mergeLiveExports). */
async function mergedLive(primary: Primary): Promise<LiveExport> {
  return mergeLiveExports(answered<LiveExport>(await primary.ask({ q: 'live' })).map((a) => a.value))
}

/**
 * Copies the workers' summed counters (in flight, requests, last error) into the primary's
 * endpoints, which carry no traffic of their own, so the views that read endpoints (the
 * dashboard) show the host's figures.
 */
function mirrorCounters(primary: Primary, answers: Array<{ value: WorkerStats }>): void {
  for (const pool of primary.pools.pools.values()) {
    for (const e of pool.endpoints) {
      let inFlight = 0
      let requests = 0
      let last: WorkerStats['upstreams'][number]['endpoints'][number]['lastError'] = null
      for (const a of answers) {
        const s = a.value.upstreams.find((u) => u.name === pool.name)?.endpoints.find((x) => x.label === e.label)
        if (s === undefined) continue
        inFlight += s.inFlight
        requests += s.requests
        if (s.lastError !== null && (last === null || s.lastError.at > last.at)) last = s.lastError
      }
      e.inFlight = inFlight
      e.requests = requests
      e.lastError = last as typeof e.lastError
    }
  }
}

/** The admin view of a whole host, served by its primary. */
export function hostView(primary: Primary): AdminView {
  // The primary's pools hold the host's endpoint states (health checks, ejections, names).
  const runtime = { get config() { return primary.config }, get pools() { return primary.pools.pools } }
  const states: StatsSource = { runtime, failures: { total: 0, list: () => [] }, get draining() { return primary.stopping } }
  return {
    get config() { return primary.config },
    states,
    async stats(): Promise<StatsSource> {
      const [live, failures, stats] = await Promise.all([mergedLive(primary), mergedFailures(primary), primary.ask<WorkerStats>({ q: 'stats' })])
      mirrorCounters(primary, answered<WorkerStats>(stats))
      return { runtime, live: { export: () => live }, failures: { total: failures.total, list: () => failures.failures }, draining: primary.stopping }
    },
    liveExport: () => mergedLive(primary),
    async upstreams() {
      const answers = await primary.ask<WorkerStats>({ q: 'stats' })
      const view = hostUpstreamsView(primary, answered<WorkerStats>(answers)) as Record<string, unknown>
      const missing = unanswered(answers)
      return missing.length > 0 ? { ...view, unanswered: missing } : view
    },
    failures: () => mergedFailures(primary),
    async metrics() {
      const answers = answered<MetricsJson>(await primary.ask<MetricsJson>({ q: 'metrics' }))
      const registry = AggregatorRegistry.aggregate(answers.map((a) => a.value))
      // The primary's own facts: its workers.
      const ready = new Gauge({ name: 'portico_workers', help: 'Worker processes by state: ready (serving) or starting (being started or replaced).', labelNames: ['state'], registers: [registry] })
      ready.set({ state: 'ready' }, primary.slots.filter((s) => s.ready).length)
      ready.set({ state: 'starting' }, primary.slots.filter((s) => !s.ready).length)
      const restarts = new Gauge({ name: 'portico_worker_restarts', help: 'Workers replaced after they died, since the primary started.', registers: [registry] })
      restarts.set(primary.slots.reduce((n, s) => n + s.restarts, 0))
      return { text: await registry.metrics(), contentType: registry.contentType }
    },
    async reload(): Promise<Reply> {
      const r: HostReloadOutcome = await primary.reloadFromSource()
      if (r.ok) return { status: 200, body: { ok: true, ...r.summary, workers: r.workers } }
      // A refused file changed nothing (400); a file some workers could not apply is the host's fault (500).
      return { status: r.refused === 'config' ? 400 : 500, body: r }
    },
    async purge(body: string): Promise<Reply> {
      const answers = await primary.ask<{ status: number; body: unknown }>({ q: 'purge', body })
      const ok = answered<{ status: number; body: { purged?: number } }>(answers)
      if (ok.length > 0 && ok[0].value.status !== 200) return ok[0].value
      return { status: 200, body: { purged: ok.reduce((n, a) => n + (a.value.body.purged ?? 0), 0), workers: ok.map((a) => ({ worker: a.slot, pid: a.pid, purged: a.value.body.purged ?? 0 })) } }
    },
    async cache() {
      const answers = await primary.ask<CacheView>({ q: 'cache' })
      const ok = answered<CacheView>(answers)
      const sum = (f: (v: CacheView) => number): number => ok.reduce((n, a) => n + f(a.value), 0)
      const redis = ok.map((a) => a.value.redis).filter((r) => r !== null)
      const missing = unanswered(answers)
      return {
        memory: { stored_bytes: sum((v) => v.memory.stored_bytes), entries: sum((v) => v.memory.entries) },
        // The host's Redis tier is available when every worker that answered is connected.
        redis: redis.length === 0 ? null : {
          url: redis[0].url,
          available: redis.every((r) => r.available),
          hits: redis.reduce((n, r) => n + r.hits, 0),
          misses: redis.reduce((n, r) => n + r.misses, 0),
          writes: redis.reduce((n, r) => n + r.writes, 0),
          errors: redis.reduce((n, r) => n + r.errors, 0),
          timeouts: redis.reduce((n, r) => n + r.timeouts, 0),
        },
        workers: ok.map((a) => ({ worker: a.slot, pid: a.pid, ...a.value })),
        ...(missing.length > 0 ? { unanswered: missing } : {}),
      }
    },
    workers() {
      return {
        primary: { pid: process.pid, distribution: primary.distribution },
        workers: primary.slots.map((s) => ({
          worker: s.slot,
          pid: s.pid,
          ready: s.ready,
          started_at: s.startedAt > 0 ? new Date(s.startedAt).toISOString() : null,
          restarts: s.restarts,
          last_exit: s.lastExit && { code: s.lastExit.code, signal: s.lastExit.signal, at: new Date(s.lastExit.at).toISOString() },
        })),
        dns_queries: primary.resolver.queries,
        cache_leases: { held: primary.leases.size, granted: primary.leases.granted, filled: primary.leases.filled },
      }
    },
  }
}

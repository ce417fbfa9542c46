/**
 * What a reload did, as the admin API's `POST /reload`, `portico reload` and the process
 * log report it: which upstreams kept their pools, which listeners were bound or closed.
 */
import type { ConfigProblem } from '../config/load.ts'
import type { Runtime } from '../proxy/runtime.ts'

/** Summary of an applied reload. Names are upstream names and listener addresses. */
export interface ReloadSummary {
  /** Routes in force after the reload. */
  routes: number
  upstreams: {
    /** Unchanged: same pool, connections and health state kept. */
    kept: string[]
    /** Config changed: a new pool; the old one closes once its in-flight requests end. */
    replaced: string[]
    added: string[]
    removed: string[]
  }
  listeners: {
    kept: string[]
    /** Bound by this reload. */
    added: string[]
    /** Closed by this reload (no new connections; open ones drain). */
    removed: string[]
  }
  /** Changes that need a restart to take effect (e.g. `admin.address`, `access_log`). */
  warnings: string[]
}

/**
 * The outcome of a reload request: applied, or refused with the old config still serving.
 * `problems` are the config file's `file:line:column` problems (empty when the failure
 * was not in the file, e.g. a new listener address could not be bound).
 */
export type ReloadOutcome =
  | { ok: true; summary: ReloadSummary }
  | { ok: false; error: string; problems: ConfigProblem[] }

/** Compares the upstreams of two runtimes by pool identity (a kept pool is the same object). */
export function upstreamChanges(old: Runtime, next: Runtime): ReloadSummary['upstreams'] {
  const kept: string[] = []
  const replaced: string[] = []
  const added: string[] = []
  for (const [name, pool] of next.pools) {
    const before = old.pools.get(name)
    if (before === undefined) added.push(name)
    else if (before === pool) kept.push(name)
    else replaced.push(name)
  }
  const removed = [...old.pools.keys()].filter((name) => !next.pools.has(name))
  return { kept, replaced, added, removed }
}

/** One line for the process log and the CLI, e.g. `reloaded: 3 routes; upstreams kept api, replaced web`. */
export function describeReload(s: ReloadSummary): string {
  const parts = [`${s.routes} route${s.routes === 1 ? '' : 's'}`]
  const u = s.upstreams
  const ups = (['kept', 'replaced', 'added', 'removed'] as const).filter((k) => u[k].length > 0).map((k) => `${k} ${u[k].join(', ')}`)
  if (ups.length > 0) parts.push(`upstreams ${ups.join('; ')}`)
  const l = s.listeners
  const ls = (['added', 'removed'] as const).filter((k) => l[k].length > 0).map((k) => `${k} ${l[k].join(', ')}`)
  if (ls.length > 0) parts.push(`listeners ${ls.join('; ')}`)
  return `reloaded: ${parts.join('; ')}`
}

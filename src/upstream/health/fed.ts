/**
 * Health fed by another process: the pools of a cluster worker run no health checks and
 * count no outliers themselves. They report the facts (a try that failed, a 5xx) to the
 * primary, which checks and decides once for the whole host, and apply the verdicts it
 * sends back, as Envoy's workers read the host health its main thread publishes. Nothing
 * on the request path waits: a report is a message sent, a verdict a few field writes.
 */
import type { CauseType } from '../../failures/causes.ts'
import type { Endpoint } from '../endpoint.ts'
import type { CheckedPool } from './active.ts'
import type { HealthHost, PoolHealth } from './index.ts'

/** The health of one endpoint as the deciding process sees it; plain JSON. */
export interface EndpointVerdict {
  /** Active health check state (true when no check is configured). */
  healthy: boolean
  /** Epoch ms when the current ejection ends; 0 when not ejected. */
  ejectedUntil: number
  /** Times ejected since the deciding pool started. */
  ejections: number
  /** RFC 9209 type of why it is down or ejected, or null. */
  downReason: CauseType | null
  downDetail: string | null
}

/** The verdicts of one pool, by endpoint label (`host:port`, as in the access log). */
export type PoolVerdicts = Record<string, EndpointVerdict>

/** Where a fed pool sends its facts and gets its verdicts (the cluster worker's link to its primary). */
export interface HealthFeed {
  /**
   * Reports a try's outcome to where outliers are counted: failures and 5xx responses,
   * and the first other response after them (it ends a run of consecutive failures).
   * Must not block.
   */
  report(upstream: string, endpoint: string, failure: CauseType | null, status: number | null): void
  /**
   * Registers a pool for the verdicts of its upstream: `apply` is called with the latest
   * ones at once when known, then with each new set.
   *
   * @returns the function that unregisters it
   */
  subscribe(upstream: string, apply: (verdicts: PoolVerdicts) => void): () => void
}

/** The verdicts of a pool's endpoints now (what the deciding process sends). */
export function verdictsOf(pool: CheckedPool, now = Date.now()): PoolVerdicts {
  const out: PoolVerdicts = {}
  for (const e of pool.endpoints) {
    out[e.label] = { healthy: e.healthy, ejectedUntil: e.ejectedUntil > now ? e.ejectedUntil : 0, ejections: e.ejections, downReason: e.downReason, downDetail: e.downDetail }
  }
  return out
}

/** Writes a verdict into an endpoint. */
function applyVerdict(e: Endpoint, v: EndpointVerdict): void {
  e.healthy = v.healthy
  e.ejectedUntil = v.ejectedUntil
  e.ejections = v.ejections
  e.downReason = v.downReason
  e.downDetail = v.downDetail
}

/**
 * Makes the health of pools fed by `feed` (give it as `PoolOptions.health`): no active
 * checks, no local outlier detection (`active` and `outlier` are null); every try's
 * outcome that matters goes to `feed.report`, verdicts come from `feed.subscribe`.
 * An endpoint that joins the pool takes the verdict already known for its label.
 */
export function fedHealth(feed: HealthFeed): (pool: HealthHost) => PoolHealth {
  return (pool) => {
    /** Endpoints whose last report was a failure or a 5xx: their next other outcome is reported too. */
    const failing = new Set<Endpoint>()
    let latest: PoolVerdicts = {}
    pool.outcomeListener = (endpoint, failure, status) => {
      if (failure !== null || (status !== null && status >= 500)) {
        failing.add(endpoint)
        feed.report(pool.name, endpoint.label, failure, status)
      } else if (failing.size > 0 && failing.delete(endpoint)) {
        // The common case, a response with nothing failing before, costs one comparison.
        feed.report(pool.name, endpoint.label, null, status)
      }
    }
    const unsubscribe = feed.subscribe(pool.name, (verdicts) => {
      latest = verdicts
      for (const e of pool.endpoints) {
        const v = verdicts[e.label]
        if (v !== undefined) applyVerdict(e, v)
      }
    })
    return {
      active: null,
      outlier: null,
      add(endpoint) {
        const v = latest[endpoint.label]
        if (v !== undefined) applyVerdict(endpoint, v)
      },
      async remove(endpoint) {
        failing.delete(endpoint)
      },
      async stop() {
        unsubscribe()
        pool.outcomeListener = null
      },
    }
  }
}

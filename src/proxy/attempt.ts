/**
 * The attempt loop: phases "select endpoint" to "await response header" of one request,
 * with retries, for every kind of try (a proxied request, an upgrade, a cache refresh).
 * It owns endpoint selection and the endpoints tried, the pending-queue bound
 * (`limits.max_pending`) and the queue timeout, the fresh-connection retry after a
 * reused connection failed (the keep-alive race), outlier reports, the retry decision
 * and the retry budget; the try (try.ts) owns the exchange with one endpoint.
 */
import { CAUSES, causeOf, type CauseId, type CauseType } from '../failures/causes.ts'
import type { Endpoint } from '../upstream/endpoint.ts'
import type { UpstreamPool } from '../upstream/pool.ts'
import type { RequestContext } from '../observe/context.ts'
import { RetryLease, RetryState, retryDecision } from './retries.ts'
import { tryTimeouts, type TryFailure, type TryResult, type TryTimeouts, type UpstreamTry } from './try.ts'

/** What the loop keeps per upstream pool, made once per pool. */
export interface PoolAttemptState {
  readonly retry: RetryState
  readonly timeouts: TryTimeouts
}

const STATES = new WeakMap<UpstreamPool, PoolAttemptState>()

/** The attempt state of `pool` (retry policy, budget and counts; try timeouts), made on first use and kept as long as the pool. */
export function attemptStateOf(pool: UpstreamPool): PoolAttemptState {
  let s = STATES.get(pool)
  if (s === undefined) {
    s = { retry: new RetryState(pool.config.retries), timeouts: tryTimeouts(pool.config.timeouts, pool.headerTimeoutMs) }
    STATES.set(pool, s)
  }
  return s
}

/**
 * One request as the loop drives it: implemented by the driver, the upgrade handler and
 * the cache refresh (one object per request, so the loop makes no closure).
 */
export interface Attempts<T extends AttemptTry> {
  readonly ctx: RequestContext
  readonly pool: UpstreamPool
  /** Whether the method is idempotent (RFC 9110 §9.2.2). */
  readonly idempotent: boolean
  /**
   * Makes the try of one endpoint.
   *
   * @param queueTimeoutMs how long it may wait for a connection when the endpoint is at its limit, else null
   * @param lease the request's place in the retry budget, for a try that retries on a status of `retries.on`
   */
  newTry(endpoint: Endpoint, queueTimeoutMs: number | null, state: PoolAttemptState, lease: RetryLease): T
  /** Whether nobody waits for the answer any more (the client went away): the loop stops without a report. */
  abandoned(): boolean
}

/** A try as the loop runs it. */
export interface AttemptTry extends UpstreamTry {
  /** Runs the try; `fresh` asks for a new connection. */
  run(dispatcher: Endpoint['dispatcher'], fresh: boolean): Promise<TryResult>
}

/** How the loop ended: a try that succeeded, the failure to answer with, or nobody left to answer. */
export type AttemptEnd<T> =
  | { readonly kind: 'done'; readonly try: T }
  | { readonly kind: 'failed'; readonly type: CauseType; readonly causeId: CauseId; readonly detail: string; readonly failure: TryFailure | null }
  | { readonly kind: 'abandoned' }

const ABANDONED: AttemptEnd<never> = Object.freeze({ kind: 'abandoned' })

/**
 * Runs tries until one succeeds or no retry is left.
 *
 * - Selection: an available endpoint not tried yet (pool.choose), waiting for the first DNS
 *   answers of a pool with names; none → `destination_unavailable` or the DNS cause.
 * - `limits.max_pending` requests waiting for a connection of an endpoint at most, then
 *   `connection_limit_reached`; a try queued at the endpoint's connection limit waits at
 *   most `limits.queue_timeout` (then the same cause).
 * - Every try's outcome goes to outlier detection, except causes that are not the endpoint's
 *   fault (source `downstream` or `internal` in the cause table, such as a body over the limit).
 * - Retries by {@link retryDecision}; a retry after a try that may have reached the
 *   application takes a place in the retry budget (tries that sent nothing add no load
 *   upstream: only `retries.attempts` bounds them).
 */
export async function runAttempts<T extends AttemptTry>(a: Attempts<T>): Promise<AttemptEnd<T>> {
  const { ctx, pool } = a
  const state = attemptStateOf(pool)
  const retry = state.retry
  // The request's place in the retry budget: taken at its first retry that adds load, given back at the end.
  const lease = new RetryLease(retry)
  const limits = pool.config.limits
  const maxAttempts = pool.config.retries.attempts
  const tried: Endpoint[] = []
  let endpoint: Endpoint | null = null
  let fresh = false
  let raceRetried = false
  retry.active++
  try {
    for (;;) {
      if (!fresh) {
        const choice = pool.chooseNow(tried) ?? await pool.choose(tried)
        if (a.abandoned()) return ABANDONED
        if (choice.endpoint === null) {
          const none = choice.failure
          // A name that does not resolve is the endpoint that failed: the log names it.
          if (none.endpoint !== null) ctx.beginAttempt(none.endpoint)
          return { kind: 'failed', type: none.type, causeId: causeOf(none.type).id, detail: none.detail, failure: null }
        }
        endpoint = choice.endpoint
        tried.push(endpoint)
      }
      const ep = endpoint as Endpoint
      ctx.beginAttempt(ep.label)
      if (ep.pending >= limits.max_pending) {
        const detail = `endpoint ${ep.label} has ${ep.pending} requests waiting for a connection (limits.max_pending ${limits.max_pending})`
        ep.lastError = { type: 'connection_limit_reached', at: Date.now(), detail: 'pending queue full' }
        return { kind: 'failed', type: 'connection_limit_reached', causeId: 'connection_limit_reached', detail, failure: null }
      }
      // With one request per connection, every try beyond max_connections waits for one to free up.
      const t = a.newTry(ep, ep.inFlight >= limits.max_connections ? limits.queue_timeout : null, state, lease)
      const failure = await t.run(ep.dispatcher, fresh)
      if (a.abandoned()) return ABANDONED
      if (failure === null) {
        pool.report(ep, null, ctx.upstreamStatus)
        return { kind: 'done', try: t }
      }
      const type = failure.type
      if (failure.causeId === null || CAUSES[failure.causeId].source === 'upstream') pool.report(ep, type === 'http_upgrade_failed' ? null : type, failure.status)
      let decision = retryDecision(failure, retry.policy, a.idempotent, t.bodyConsumed, ctx.attempts, maxAttempts, raceRetried)
      if (decision !== 'no' && failure.sent && !lease.acquire()) {
        failure.detail += '; not retried: retry budget exhausted'
        decision = 'no'
      }
      if (decision === 'no') return { kind: 'failed', type: type ?? 'proxy_internal_error', causeId: failure.causeId ?? 'proxy_internal_error', detail: failure.detail, failure }
      fresh = decision === 'fresh'
      if (fresh) {
        raceRetried = true
        retry.counts.fresh_connection++
      } else {
        retry.counts.another_endpoint++
      }
    }
  } finally {
    retry.active--
    lease.release()
  }
}

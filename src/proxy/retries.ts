/**
 * Retries: the policy of an upstream (`retries.on`), the decision after a failed try, and
 * the retry budget, held by a request through a lease. Every retry rule of Portico is here;
 * the attempt loop (attempt.ts) only asks.
 */
import type { UpstreamConfig } from '../config/schema.ts'
import { isRetryable } from '../failures/causes.ts'
import type { UpstreamPool } from '../upstream/pool.ts'
import type { TryFailure } from './try.ts'

/** `retries.on` compiled. */
export interface RetryPolicy {
  /** Retry failures where nothing was sent (DNS, refused, connect timeout, TLS). */
  connect: boolean
  /** Retry `connection_terminated`: on a reused connection once on a fresh one, else on another endpoint (idempotent methods). */
  reset: boolean
  /** Retry `http_response_timeout` (idempotent methods). */
  timeout: boolean
  /** Upstream statuses to retry (idempotent methods without a body). */
  statuses: ReadonlySet<number>
}

/** Compiles `retries.on` (Envoy `retry_on`, nginx `proxy_next_upstream`). */
export function compileRetryPolicy(on: UpstreamConfig['retries']['on']): RetryPolicy {
  return {
    connect: on.includes('connect_failure'),
    reset: on.includes('reset'),
    timeout: on.includes('http_response_timeout'),
    statuses: new Set(on.filter((c): c is number => typeof c === 'number')),
  }
}

/** What follows a failed try: a try on another endpoint, once more on a fresh connection to the same endpoint, or the failure is answered. */
export type RetryDecision = 'another' | 'fresh' | 'no'

/**
 * Whether a failed try goes on to another try (Pingora's and Envoy's retry rules):
 * - never once request body bytes were taken from the client;
 * - an upstream status listed in `retries.on` (pre-approved before the try): another try;
 * - `connection_terminated` (`reset`), idempotent methods only: on a reused keep-alive
 *   connection once more on a fresh connection (the keep-alive race, where the upstream
 *   closed the idle connection as the request was written); otherwise on another endpoint
 *   within `retries.attempts` (the endpoint crashed or restarted while holding the request);
 * - nothing sent (`connect_failure`): any method, within `retries.attempts`;
 * - `http_response_timeout` when listed: idempotent methods, within `retries.attempts`.
 *
 * @param bodyConsumed request body bytes the failed try took from the client
 * @param attempts tries made so far, this one included
 * @param maxAttempts `retries.attempts`
 * @param raceRetried whether this request already had its fresh-connection retry
 */
export function retryDecision(f: TryFailure, policy: RetryPolicy, idempotent: boolean, bodyConsumed: number, attempts: number, maxAttempts: number, raceRetried: boolean): RetryDecision {
  if (bodyConsumed > 0) return 'no'
  if (f.type === null) return 'another'
  if (f.type === 'connection_terminated') {
    if (!policy.reset || !isRetryable(f.type, idempotent)) return 'no'
    // A reused connection the upstream closed while idle (the keep-alive race): once more, on a fresh one.
    if (f.reused && !raceRetried) return 'fresh'
    // The endpoint reset a request it had taken (a crash or a restart): an idempotent request may go elsewhere.
    return attempts < maxAttempts ? 'another' : 'no'
  }
  if (attempts >= maxAttempts) return 'no'
  if (!f.sent && isRetryable(f.type, idempotent)) return policy.connect ? 'another' : 'no'
  if (f.type === 'http_response_timeout' && policy.timeout && idempotent) return 'another'
  return 'no'
}

/**
 * Whether the next try may end on an upstream status of `retries.on` to try again
 * (its response then discarded): idempotent methods without a body, within `retries.attempts`.
 *
 * @param attempts tries made so far, the coming one included
 */
export function statusRetryAllowed(policy: RetryPolicy, idempotent: boolean, hasBody: boolean, attempts: number, maxAttempts: number): boolean {
  return policy.statuses.size > 0 && idempotent && !hasBody && attempts < maxAttempts
}

/** Retries of one upstream, counted since its pool was built (read by the metrics and the admin API). */
export interface RetryCounts {
  /** Tries repeated on another endpoint (or the same when no other is left) after a failure or a status of `retries.on`. */
  another_endpoint: number
  /** Tries repeated once on a fresh connection after a reused keep-alive connection was closed under the request (the keep-alive race). */
  fresh_connection: number
  /** Retries refused because the retry budget was spent. */
  budget_exhausted: number
}

/**
 * The retry state of one upstream pool: its compiled policy, the requests in flight and
 * in retry for the budget (Envoy `retry_budget`), and the retry counts.
 */
export class RetryState {
  readonly policy: RetryPolicy
  readonly #budget: UpstreamConfig['retries']['budget']
  /** Requests being proxied to this upstream now (until their response header). */
  active = 0
  /** Of those, requests holding a place in the retry budget. */
  retrying = 0
  readonly counts: RetryCounts = { another_endpoint: 0, fresh_connection: 0, budget_exhausted: 0 }

  constructor(config: UpstreamConfig['retries']) {
    this.policy = compileRetryPolicy(config.on)
    this.#budget = config.budget
  }

  /** Whether one more request may go on to a retry: retries at once stay within `max(budget.min_concurrency, budget.ratio × active requests)`. */
  allowed(): boolean {
    return this.retrying < Math.max(this.#budget.min_concurrency, this.#budget.ratio * this.active)
  }
}

const STATES = new WeakMap<UpstreamPool, RetryState>()

/** The retry state of `pool`, made on first use; it lives as long as the pool (a reload that keeps the pool keeps it). */
export function retryStateOf(pool: UpstreamPool): RetryState {
  let s = STATES.get(pool)
  if (s === undefined) {
    s = new RetryState(pool.config.retries)
    STATES.set(pool, s)
  }
  return s
}

/**
 * One request's place in its upstream's retry budget: taken at its first retry that adds
 * load upstream, kept through later retries, given back when the request ends.
 */
export class RetryLease {
  readonly #state: RetryState
  #held = false

  constructor(state: RetryState) {
    this.#state = state
  }

  /** Takes the place, unless already held. @returns whether the request may retry */
  acquire(): boolean {
    if (this.#held) return true
    if (!this.#state.allowed()) {
      this.#state.counts.budget_exhausted++
      return false
    }
    this.#state.retrying++
    this.#held = true
    return true
  }

  /** Gives the place back, if held. Idempotent. */
  release(): void {
    if (!this.#held) return
    this.#held = false
    this.#state.retrying--
  }
}

/**
 * One try of a request against one endpoint: the base that the HTTP exchange, the upgrade
 * try and the cache's background fetch extend. It owns what every try shares: the
 * endpoint's counters (in flight, pending, requests), the queue timeout while it waits for
 * a connection, the phase timers (upload idle, first byte, body idle, total) on one timer,
 * the connection facts, the classification of a failure, and settling exactly once.
 */
import type { Duplex } from 'node:stream'
import type { UpstreamConfig } from '../config/schema.ts'
import { CAUSES, type CauseId, type CauseType } from '../failures/causes.ts'
import { classify, GatewayError, type FailureStage } from '../failures/classify.ts'
import type { RequestContext } from '../observe/context.ts'
import { recordConnection } from '../upstream/connector.ts'
import type { Endpoint } from '../upstream/endpoint.ts'
import type { Http1Controller, Http1DispatchOptions, Http1Handler } from '../upstream/http1/connection.ts'
import type { Http1Pool } from '../upstream/http1/pool.ts'

/** How a try ended before its response was taken (no response header went downstream). */
export interface TryFailure {
  /** The cause, or null when the try ended on an upstream status listed in `retries.on` (the response was discarded to try again). */
  type: CauseType | null
  /** The row of the cause table to answer with (`type`, or a variant of it); null when `type` is. */
  causeId: CauseId | null
  /** The upstream status when one arrived (a status of `retries.on`, a refused upgrade), else null. */
  status: number | null
  detail: string
  /** Whether request bytes may have reached the upstream (a connection was assigned). */
  sent: boolean
  /** Whether the connection had served earlier requests (keep-alive reuse). */
  reused: boolean
}

/** The result of a try: null when it succeeded (what it got is on the try), else its failure. */
export type TryResult = TryFailure | null

/** The client went away; not an upstream failure. */
export class ClientClosedError extends Error {
  readonly code = 'PORTICO_CLIENT_CLOSED'
  constructor() {
    super('client closed the connection')
  }
}

/** The timeouts of a try, all in ms. */
export interface TryTimeouts {
  /** First-byte timeout: the shorter of `timeouts.response_header` and `retries.per_try_timeout`. */
  readonly headerMs: number
  /** Upstream idle timeout while sending the request body and while reading the response body (`timeouts.idle`). */
  readonly idleMs: number
  /** Whole exchange, from dispatch (`timeouts.total`), or undefined for none. */
  readonly totalMs: number | undefined
}

/** The {@link TryTimeouts} of an upstream. */
export function tryTimeouts(timeouts: UpstreamConfig['timeouts'], headerMs: number): TryTimeouts {
  return { headerMs, idleMs: timeouts.idle, totalMs: timeouts.total }
}

/** Which phase timer is armed. */
const TIMER_UPLOAD = 1
const TIMER_HEADER = 2
const TIMER_BODY = 3

/**
 * The base of a try; implements the pool's handler. A subclass sends its request with
 * {@link dispatchTo} and ends the try with {@link settle} (once) and {@link finish} (once).
 */
export abstract class UpstreamTry implements Http1Handler {
  readonly ctx: RequestContext
  readonly endpoint: Endpoint
  protected readonly timeouts: TryTimeouts
  /** `performance.now()` at dispatch, for the first-byte time. */
  protected readonly started = performance.now()
  protected controller: Http1Controller | null = null
  /** The connection the request was written on, once assigned. */
  protected socket: Duplex | null = null
  /** Whether {@link socket} had served earlier requests. */
  protected reused = false
  /** Whether the response header was taken (went downstream or was stored); failures after it are mid-body. */
  protected pastHeader = false
  readonly #queueTimeoutMs: number | null
  /**
   * The one timer of the phase timeouts. Moving the deadline only sets {@link #deadline}:
   * the timer, when it fires before the deadline, waits again for the rest, so a try makes
   * one timer in the common case instead of one per phase and per chunk.
   */
  #timer: NodeJS.Timeout | null = null
  #timerKind = 0
  /** When the current phase times out, `performance.now()` ms. */
  #deadline = 0
  /** When {@link #timer} fires, `performance.now()` ms. */
  #timerDue = 0
  #totalTimer: NodeJS.Timeout | null = null
  #queueTimer: NodeJS.Timeout | null = null
  /** Whether the try still counts in the endpoint's pending requests (waiting for a connection). */
  #pending = false
  #settled = false
  #finished = false
  #resolve: (r: TryResult) => void = noop

  /**
   * @param queueTimeoutMs when the endpoint is at its connection limit, how long the try may
   *   wait for a connection (`limits.queue_timeout`); else null
   */
  constructor(ctx: RequestContext, endpoint: Endpoint, timeouts: TryTimeouts, queueTimeoutMs: number | null) {
    this.ctx = ctx
    this.endpoint = endpoint
    this.timeouts = timeouts
    this.#queueTimeoutMs = queueTimeoutMs
  }

  /** Request body bytes taken from the client by this try (0: the body can be replayed). */
  get bodyConsumed(): number {
    return 0
  }

  /**
   * Sends the request to `dispatcher` (the endpoint's connection pool), counting it on the
   * endpoint and arming the total and queue timers.
   *
   * @returns a promise of null when the try succeeded, or of its failure
   */
  protected dispatchTo(dispatcher: Http1Pool, opts: Http1DispatchOptions): Promise<TryResult> {
    const promise = new Promise<TryResult>((resolve) => { this.#resolve = resolve })
    const ep = this.endpoint
    ep.inFlight++
    ep.pending++
    ep.requests++
    this.#pending = true
    if (this.timeouts.totalMs !== undefined) this.#totalTimer = setTimeout(UpstreamTry.#fireTotalTimeout, this.timeouts.totalMs, this)
    if (this.#queueTimeoutMs !== null) this.#queueTimer = setTimeout(UpstreamTry.#fireQueueTimeout, this.#queueTimeoutMs, this)
    dispatcher.dispatch(opts, this)
    return promise
  }

  /** Aborts the try (client gone, a timeout, shutdown); the pool then calls `onResponseError`. */
  abort(err: Error): void {
    this.controller?.abort(err)
  }

  /** Called by the pool inside `dispatch`, so every timer of the try finds the controller. */
  onRequestStart(controller: Http1Controller): void {
    this.controller = controller
  }

  /** Called with the connection the request is about to be written on. */
  onSocket(socket: Duplex): void {
    this.socket = socket
    this.#leaveQueue()
    this.reused = recordConnection(this.ctx, socket)
    if (this.uploads()) this.arm(TIMER_UPLOAD, this.timeouts.idleMs)
    else this.arm(TIMER_HEADER, this.timeouts.headerMs)
  }

  /** Whether the request has a body to send (the upload idle timer runs before the first-byte one). */
  protected uploads(): boolean {
    return false
  }

  /**
   * Whether the upload is waiting for the client, not for the upstream: the upload idle
   * timer then waits on (the client's silence has its own timeout, `body_idle`).
   */
  protected waitingOnClient(): boolean {
    return false
  }

  onBodySent(): void {
    if (this.#timerKind === TIMER_UPLOAD) this.#deadline = performance.now() + this.timeouts.idleMs
  }

  onRequestSent(): void {
    if (this.#timerKind === TIMER_UPLOAD) this.arm(TIMER_HEADER, this.timeouts.headerMs)
  }

  /** Marks the response header taken: the first-byte time is recorded and the body idle timer runs. */
  protected headerTaken(statusCode: number): void {
    this.ctx.timings.ttfb_ms = performance.now() - this.started
    this.ctx.upstreamStatus = statusCode
  }

  /** Starts the body idle timer (after the response header was taken). */
  protected armBodyIdle(): void {
    this.arm(TIMER_BODY, this.timeouts.idleMs)
  }

  /** Pushes the body idle deadline on (a body chunk arrived). */
  protected bodyProgress(): void {
    if (this.#timerKind === TIMER_BODY) this.#deadline = performance.now() + this.timeouts.idleMs
  }

  /**
   * Classifies an upstream error of this try (the stage from what happened so far),
   * remembers it as the endpoint's last error, and says whether it was a reused connection.
   */
  protected failureOf(err: Error): TryFailure {
    const stage: FailureStage = this.pastHeader ? 'stream_response' : this.socket !== null ? 'await_response_header' : 'connect'
    const c = classify(err, stage)
    // A refusal of the request itself (a body over the limit, a silent client) is not the endpoint's fault.
    if (CAUSES[c.causeId].source === 'upstream') this.endpoint.lastError = { type: c.type, at: Date.now(), detail: c.detail }
    let detail = c.detail
    if (c.type === 'connection_terminated') detail += this.reused ? ' (on a reused keep-alive connection)' : ' (on a new connection)'
    return { type: c.type, causeId: c.causeId, status: null, detail, sent: this.socket !== null, reused: this.reused }
  }

  /** Ends the try's promise with `r` (null: success); later calls do nothing. */
  protected settle(r: TryResult): void {
    if (this.#settled) return
    this.#settled = true
    this.#resolve(r)
  }

  /** Whether the try's promise has ended. */
  protected get settled(): boolean {
    return this.#settled
  }

  /** The try is over: timers cleared, the endpoint no longer counts it in flight. Idempotent. */
  protected finish(): void {
    if (this.#finished) return
    this.#finished = true
    this.#leaveQueue()
    this.clearTimers()
    this.endpoint.inFlight--
  }

  protected clearTimers(): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    if (this.#totalTimer !== null) clearTimeout(this.#totalTimer)
    this.#timer = null
    this.#totalTimer = null
  }

  private arm(kind: number, ms: number): void {
    this.#timerKind = kind
    this.#deadline = performance.now() + ms
    // A timer due no later than the new deadline stays: when it fires it waits for the rest.
    if (this.#timer !== null) {
      if (this.#timerDue <= this.#deadline) return
      clearTimeout(this.#timer)
    }
    this.#timerDue = this.#deadline
    this.#timer = setTimeout(UpstreamTry.#fireTimeout, ms, this)
  }

  // The timers' callbacks are shared by every try, which is passed as the argument: no closure per try.
  static #fireTimeout(t: UpstreamTry): void {
    t.#onTimeout()
  }

  static #fireTotalTimeout(t: UpstreamTry): void {
    t.#onTotalTimeout()
  }

  static #fireQueueTimeout(t: UpstreamTry): void {
    t.#onQueueTimeout()
  }

  #onTimeout(): void {
    // Node's timers count from the event loop's cached clock, which may lag: within 1 ms is due.
    const left = this.#deadline - performance.now()
    if (left > 1) {
      this.#timerDue = this.#deadline
      this.#timer = setTimeout(UpstreamTry.#fireTimeout, Math.ceil(left), this)
      return
    }
    const t = this.timeouts
    if (this.#timerKind === TIMER_UPLOAD && this.waitingOnClient()) {
      this.#deadline = this.#timerDue = performance.now() + t.idleMs
      this.#timer = setTimeout(UpstreamTry.#fireTimeout, t.idleMs, this)
      return
    }
    const err = this.#timerKind === TIMER_HEADER
      ? new GatewayError('http_response_timeout', `no response header within ${t.headerMs}ms`)
      : this.#timerKind === TIMER_BODY
        ? new GatewayError('connection_read_timeout', `response body idle for more than ${t.idleMs}ms`)
        // The upstream stopped taking the request body (its reads stalled): the exchange cannot complete.
        : new GatewayError('http_response_timeout', `upstream took no request body bytes for more than ${t.idleMs}ms`)
    this.#timer = null
    this.abort(err)
  }

  #onTotalTimeout(): void {
    this.#totalTimer = null
    this.abort(new GatewayError(this.pastHeader ? 'connection_read_timeout' : 'http_response_timeout',
      `exchange took longer than the total timeout ${this.timeouts.totalMs}ms`))
  }

  #onQueueTimeout(): void {
    this.#queueTimer = null
    if (this.socket !== null) return
    // The pool drops it from its queue without opening a connection; onResponseError settles the try.
    this.abort(new GatewayError('connection_limit_reached',
      `endpoint ${this.endpoint.label} stayed at its connection limit for ${this.#queueTimeoutMs}ms`))
  }

  #leaveQueue(): void {
    if (this.#queueTimer !== null) {
      clearTimeout(this.#queueTimer)
      this.#queueTimer = null
    }
    if (this.#pending) {
      this.#pending = false
      this.endpoint.pending--
    }
  }
}

function noop(): void {}

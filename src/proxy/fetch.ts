/**
 * Background fetches for `stale-while-revalidate` (RFC 5861 §3): a GET sent through the
 * attempt loop like any request (selection, first DNS answers, limits, outlier reports,
 * retries and their budget), outside any client exchange, with the body read whole.
 */
import type { HeaderRules } from './header-rules.ts'
import type { IncomingHttpHeaders } from 'node:http'
import { RequestContext } from '../observe/context.ts'
import type { Endpoint } from '../upstream/endpoint.ts'
import type { Http1Controller } from '../upstream/http1/connection.ts'
import type { Http1Pool } from '../upstream/http1/pool.ts'
import type { UpstreamPool } from '../upstream/pool.ts'
import { runAttempts, type Attempts, type PoolAttemptState } from './attempt.ts'
import { UpstreamTry, type TryResult, type TryTimeouts } from './try.ts'

/** A complete upstream response, as a background refresh gets it. */
export interface FetchedResponse {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer[]
}

/** One try of a background fetch: the response is collected, not streamed. */
class FetchTry extends UpstreamTry {
  readonly #path: string
  readonly #headers: string[]
  /** The response, once complete. */
  response: FetchedResponse | null = null
  #status = 0
  #fields: IncomingHttpHeaders = {}
  readonly #body: Buffer[] = []

  constructor(ctx: RequestContext, endpoint: Endpoint, timeouts: TryTimeouts, queueTimeoutMs: number | null, path: string, headers: string[]) {
    super(ctx, endpoint, timeouts, queueTimeoutMs)
    this.#path = path
    this.#headers = headers
  }

  run(dispatcher: Http1Pool, fresh: boolean): Promise<TryResult> {
    return this.dispatchTo(dispatcher, { path: this.#path, method: 'GET', headers: this.#headers, body: null, fresh })
  }

  onResponseStart(_controller: Http1Controller, statusCode: number, headers: IncomingHttpHeaders): void {
    if (statusCode < 200) return
    this.headerTaken(statusCode)
    this.pastHeader = true
    this.armBodyIdle()
    this.#status = statusCode
    this.#fields = headers
  }

  onResponseData(_controller: Http1Controller, chunk: Buffer): void {
    this.bodyProgress()
    this.#body.push(chunk)
  }

  onResponseEnd(): void {
    this.response = { status: this.#status, headers: this.#fields, body: this.#body }
    this.settle(null)
    this.finish()
  }

  onResponseError(_controller: Http1Controller, err: Error): void {
    this.settle(this.failureOf(err))
    this.finish()
  }
}

/** A background fetch as the attempt loop drives it. */
class Fetch implements Attempts<FetchTry> {
  readonly ctx: RequestContext
  readonly pool: UpstreamPool
  readonly idempotent = true
  readonly #path: string
  readonly #headers: string[]

  constructor(pool: UpstreamPool, path: string, headers: string[]) {
    this.pool = pool
    this.#path = path
    this.#headers = headers
    this.ctx = new RequestContext('', '', 'GET', '', path, 'HTTP/1.1')
  }

  newTry(ep: Endpoint, queueTimeoutMs: number | null, state: PoolAttemptState): FetchTry {
    return new FetchTry(this.ctx, ep, state.timeouts, queueTimeoutMs, this.#path, this.#headers)
  }

  abandoned(): boolean {
    return false
  }
}

/**
 * Sends a GET for `path` to the upstream `pool` through the attempt loop.
 *
 * @param origin the client request the fetch refreshes for (its ID is sent as X-Request-Id's source; nothing is logged for the fetch)
 * @param headers upstream request header fields, flat `[name, value, ...]`; the client's conditional fields are dropped
 * @param extra fields added (the cache's validators)
 * @param passServer keep the upstream's `Server` field (the route's `pass_server_header`); else it is dropped before the cache stores the response
 * @param rules the route's response header rules, applied before the cache stores the response
 * @returns the whole response
 * @throws {Error} with the cause and detail when every try failed
 */
export async function fetchFromPool(origin: RequestContext, pool: UpstreamPool, path: string, headers: string[], extra: Record<string, string>, passServer = false, rules: HeaderRules | null = null): Promise<FetchedResponse> {
  const flat: string[] = []
  for (let i = 0; i < headers.length; i += 2) {
    if (!/^if-/i.test(headers[i])) flat.push(headers[i], headers[i + 1])
  }
  for (const [k, v] of Object.entries(extra)) flat.push(k, v)
  const fetch = new Fetch(pool, path, flat)
  fetch.ctx.requestId = origin.requestId
  const end = await runAttempts(fetch)
  if (end.kind === 'done' && end.try.response !== null) {
    if (!passServer) delete end.try.response.headers.server
    rules?.applyToObject(end.try.response.headers)
    return end.try.response
  }
  throw new Error(end.kind === 'failed' ? `${end.type}: ${end.detail}` : 'background fetch abandoned')
}

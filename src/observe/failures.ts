/**
 * The recent-failure ring: the last gateway failures (access log records whose `error` is
 * an RFC 9209 type), newest last, for the admin API's `GET /failures`.
 */
import type { AccessLogRecord } from './access-log.ts'

/** One gateway failure as the admin API shows it; fields as in the access log (DESIGN.md §4). */
export interface FailureRecord {
  /** ISO 8601 time the request started. */
  ts: string
  request_id: string
  /** RFC 9209 error type, e.g. `connection_refused`. */
  error: string
  /** Status sent downstream (a 2xx/3xx here means the failure came mid-body). */
  status: number
  method: string
  host: string
  path: string
  route: string | null
  upstream: string | null
  /** `host:port` of the endpoint tried last. */
  endpoint: string | null
  attempts: number
  connection_reused: boolean
  duration_ms: number
  /** Timings of the last try, in milliseconds. */
  timings: AccessLogRecord['timings']
  /** Short human detail of the failure (internal addresses included: the admin API is for operators). */
  details: string | null
}

/** Default capacity of the ring. */
export const FAILURE_RING_SIZE = 200

/**
 * A fixed-size ring buffer of the last gateway failures. Feed it every access log record
 * with {@link FailureRing.observe}; records with `error: null` (including 499 client
 * closes) are ignored.
 */
export class FailureRing {
  /** Most records kept; the oldest is dropped first. */
  readonly capacity: number
  readonly #items: FailureRecord[] = []
  #next = 0
  #total = 0

  /** @param capacity most records kept (default 200) */
  constructor(capacity = FAILURE_RING_SIZE) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`failure ring capacity must be a positive integer, got ${capacity}`)
    this.capacity = capacity
  }

  /** Failures seen since start, including those the ring has dropped. */
  get total(): number {
    return this.#total
  }

  /** Takes one access log record; keeps it when it is a gateway failure. */
  observe(r: AccessLogRecord): void {
    if (r.error === null) return
    const f: FailureRecord = {
      ts: r.ts, request_id: r.request_id, error: r.error, status: r.status,
      method: r.method, host: r.host, path: r.path,
      route: r.route, upstream: r.upstream, endpoint: r.endpoint,
      attempts: r.attempts, connection_reused: r.connection_reused, duration_ms: r.duration_ms,
      timings: { ...r.timings }, details: r.details,
    }
    this.#total++
    if (this.#items.length < this.capacity) {
      this.#items.push(f)
    } else {
      this.#items[this.#next] = f
      this.#next = (this.#next + 1) % this.capacity
    }
  }

  /** The failures kept, oldest first. */
  list(): FailureRecord[] {
    return [...this.#items.slice(this.#next), ...this.#items.slice(0, this.#next)]
  }
}

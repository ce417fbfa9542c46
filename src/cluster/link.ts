/**
 * The IPC between the primary and its workers: typed messages over the `node:cluster`
 * channel (advanced serialization, so Buffers and plain objects cross as they are), and
 * requests that expect an answer, matched by id and bounded in time.
 */
import type { Config } from '../config/schema.ts'
import type { CauseType } from '../failures/causes.ts'
import type { PoolVerdicts } from '../upstream/health/index.ts'

/** A listener as a worker bound it: the configured address and the real port. */
export interface BoundListener {
  /** `listeners[].address` as configured (port 0 included). */
  configured: string
  port: number
  family: string
  address: string
  tls: boolean
}

/** One try outcome a worker reports for outlier detection: upstream, endpoint label, failure, status. */
export type Fact = [upstream: string, endpoint: string, failure: CauseType | null, status: number | null]

/** A request a worker admitted under a `local` rate limit: limit id, key, interval (ms), when (ms since the epoch). */
export type Admission = [id: string, key: string, intervalMs: number, at: number]

/** The host's TAT of a key of a `local` rate limit: limit id, key, TAT (ms since the epoch). */
export type HostTat = [id: string, key: string, tat: number]

/** What the primary asks a worker, and the worker answers (see worker.ts). */
export type Question =
  | { q: 'reload'; config: Config }
  | { q: 'stats' }
  | { q: 'failures' }
  | { q: 'metrics' }
  | { q: 'live' }
  | { q: 'entry'; key: string }
  | { q: 'purge'; body: string }
  | { q: 'cache' }

/** Messages from the primary to a worker. */
export type ToWorker =
  | { t: 'start'; config: Config; bind: { reusePort: boolean; exclusive: boolean }; slot: number }
  | { t: 'ask'; id: number; question: Question }
  | { t: 'verdicts'; upstream: string; verdicts: PoolVerdicts }
  | { t: 'limits'; tats: HostTat[] }
  | { t: 'answer'; id: number; value?: unknown; error?: { message: string; code?: string } }
  | { t: 'stop'; drainMs: number }

/** Messages from a worker to the primary. */
export type ToPrimary =
  | { t: 'ready'; listeners: BoundListener[] }
  | { t: 'failed'; message: string }
  | { t: 'facts'; facts: Fact[] }
  | { t: 'admitted'; admitted: Admission[] }
  | { t: 'dns'; id: number; kind: 'A' | 'AAAA' | 'lookup'; host: string; servers: string[] | null; timeoutMs: number }
  | { t: 'lease'; id: number; key: string; waitMs: number }
  | { t: 'release'; key: string; stored: boolean }
  | { t: 'answer'; id: number; value?: unknown; error?: { message: string; code?: string } }

/** Something messages go through: a worker's `process`, or the primary's handle of a worker. */
export interface Channel {
  send(message: unknown, callback?: (err: Error | null) => void): boolean
}

/** An error that crossed the channel: its message and `code` kept (`ENOTFOUND`, ...). */
export function revive(e: { message: string; code?: string }): Error {
  return Object.assign(new Error(e.message), e.code === undefined ? {} : { code: e.code })
}

/** The plain form of an error, to send. */
export function plainError(err: unknown): { message: string; code?: string } {
  const e = err as { message?: string; code?: unknown }
  return { message: String(e?.message ?? err), ...(typeof e?.code === 'string' ? { code: e.code } : {}) }
}

/**
 * Requests over one channel that expect an `answer` message with the same id. Each is
 * bounded by its own timer; a closed channel fails those pending.
 */
export class Requests {
  readonly #channel: Channel
  #next = 1
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>()

  constructor(channel: Channel) {
    this.#channel = channel
  }

  /**
   * Sends `message` with a fresh `id` and resolves with the answer's value.
   *
   * @param timeoutMs longest wait for the answer, in ms
   * @throws {Error} with the remote error, on timeout, or when the channel is closed
   */
  send<T>(message: Record<string, unknown>, timeoutMs: number): Promise<T> {
    const id = this.#next++
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        reject(new Error(`no answer within ${timeoutMs}ms`))
      }, timeoutMs)
      timer.unref()
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer })
      try {
        this.#channel.send({ ...message, id }, (err) => { if (err) this.#fail(id, err) })
      } catch (err) {
        this.#fail(id, err as Error)
      }
    })
  }

  /** Settles the request an `answer` message is for. */
  answer(m: { id: number; value?: unknown; error?: { message: string; code?: string } }): void {
    const p = this.#pending.get(m.id)
    if (p === undefined) return
    this.#pending.delete(m.id)
    clearTimeout(p.timer)
    if (m.error !== undefined) p.reject(revive(m.error))
    else p.resolve(m.value)
  }

  /** Fails every pending request (the other side went away). */
  close(why: string): void {
    for (const id of [...this.#pending.keys()]) this.#fail(id, new Error(why))
  }

  #fail(id: number, err: Error): void {
    const p = this.#pending.get(id)
    if (p === undefined) return
    this.#pending.delete(id)
    clearTimeout(p.timer)
    p.reject(err)
  }
}

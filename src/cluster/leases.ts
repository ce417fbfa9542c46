/**
 * Request collapsing across workers: the primary grants the "fetch lease" of a cache key
 * to the first worker that misses it; workers missing the same key meanwhile wait, and get
 * the response the holder stored (or go upstream themselves when it stored nothing, when
 * their wait runs out, or when the holder dies). The response crosses to the primary only
 * when some worker waits for it.
 */
import type { StoreEntry } from '../cache/store.ts'

/** Answers a lease request: granted, or the entry another worker fetched (undefined: go upstream). */
export type LeaseAnswer = (answer: { granted: boolean; entry?: StoreEntry }) => void

interface Lease {
  holder: number
  waiters: LeaseAnswer[]
  timer: NodeJS.Timeout
}

/** The fetch leases of one host, by primary cache key. */
export class LeaseTable {
  readonly #leases = new Map<string, Lease>()
  /** Leases granted so far. */
  granted = 0
  /** Lease requests answered with another worker's response. */
  filled = 0

  /**
   * A worker missed `key`: grants the lease when nobody holds it, else queues `answer` until
   * the holder releases it. A lease not released within `waitMs` lapses (the waiters go
   * upstream themselves; they stopped waiting by then anyway).
   */
  request(worker: number, key: string, waitMs: number, answer: LeaseAnswer): void {
    const lease = this.#leases.get(key)
    if (lease !== undefined && lease.holder !== worker) {
      lease.waiters.push(answer)
      return
    }
    if (lease !== undefined) clearTimeout(lease.timer)
    const timer = setTimeout(() => this.fill(this.release(worker, key), undefined), Math.max(1, waitMs))
    timer.unref()
    this.#leases.set(key, { holder: worker, waiters: lease?.waiters ?? [], timer })
    this.granted++
    answer({ granted: true })
  }

  /**
   * The holder is done with `key`: the lease ends.
   *
   * @returns the waiters, to {@link fill} with the stored response; empty when nobody
   *   waits or `worker` does not hold the lease
   */
  release(worker: number, key: string): LeaseAnswer[] {
    const lease = this.#leases.get(key)
    if (lease === undefined || lease.holder !== worker) return []
    this.#leases.delete(key)
    clearTimeout(lease.timer)
    return lease.waiters
  }

  /** Answers waiters with the response the holder stored (undefined: go upstream). */
  fill(waiters: readonly LeaseAnswer[], entry: StoreEntry | undefined): void {
    for (const w of waiters) {
      if (entry !== undefined) this.filled++
      w(entry === undefined ? { granted: false } : { granted: false, entry })
    }
  }

  /** A worker died: its leases end with nothing stored. */
  releaseAll(worker: number): void {
    for (const [key, lease] of [...this.#leases]) if (lease.holder === worker) this.fill(this.release(worker, key), undefined)
  }

  /** Leases held now. */
  get size(): number {
    return this.#leases.size
  }
}

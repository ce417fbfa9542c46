/**
 * A cap on the requests one client address has in progress at once (nginx `limit_conn`
 * keyed by `$binary_remote_addr`, counting requests rather than connections, so HTTP/1.1
 * and HTTP/2 count alike). A request over the cap is refused at once with 429
 * `http_request_denied`; it is never queued, so a greedy client cannot fill memory.
 */

/** Counts in-progress requests per client address. One per gateway. */
export class ClientLimiter {
  /** Most requests in progress per client address, or null for no cap. */
  max: number | null
  readonly #counts = new Map<string, number>()
  /** Requests refused since start. */
  refused = 0

  /** @param max most requests in progress per client address, or null for no cap */
  constructor(max: number | null) {
    this.max = max
  }

  /**
   * Counts a request of `address` in, unless it is at the cap.
   * @returns whether the request may go on; when true, call {@link release} once it ends
   */
  acquire(address: string): boolean {
    const n = this.#counts.get(address) ?? 0
    if (this.max !== null && n >= this.max) {
      this.refused++
      return false
    }
    this.#counts.set(address, n + 1)
    return true
  }

  /** Counts a request of `address` out. */
  release(address: string): void {
    const n = (this.#counts.get(address) ?? 1) - 1
    if (n > 0) this.#counts.set(address, n)
    else this.#counts.delete(address)
  }

  /** Requests of `address` in progress now. */
  count(address: string): number {
    return this.#counts.get(address) ?? 0
  }

  /** Client addresses with requests in progress now. */
  get clients(): number {
    return this.#counts.size
  }
}

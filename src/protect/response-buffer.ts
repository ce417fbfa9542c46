/**
 * Response buffering (nginx `proxy_buffering on`): the upstream response body is taken at
 * the upstream's pace and handed to the client at the client's, with what the client has
 * not taken yet held in memory up to a size, then in a temporary file. A slow reader then
 * holds a file, not an upstream connection: the upstream exchange ends as soon as the
 * upstream has sent the body.
 *
 * While the client keeps up, chunks go straight through (nothing is copied or stored); the
 * exchange makes the buffer only once the client first falls behind.
 * When the caps are reached the sink pushes back on the upstream instead (plain streaming).
 */
import type { ServerResponse } from 'node:http'
import { SpillStore, type BufferBudget } from './spill.ts'

/** Most bytes handed to the response per write when draining stored bytes. */
const DRAIN_CHUNK = 64 * 1024

/**
 * Where an upstream response body goes when response buffering is on: write upstream
 * chunks with {@link write}, finish with {@link end}. The sink ends the response itself
 * once the client took every byte.
 */
export class ResponseBuffer {
  readonly #res: ServerResponse
  readonly #budget: BufferBudget
  #store: SpillStore | null = null
  /** Bytes of the store handed to the response. */
  #drained = 0
  /** The response asked to wait for 'drain'. */
  #blocked = false
  #draining = false
  #ended = false
  #trailers: Record<string, string> | null = null
  #closed = false
  /** Called once the caps let the upstream be read again, after {@link write} returned false. */
  #onResume: (() => void) | null = null

  /**
   * @param res the downstream response, its head already written
   * @param blocked whether the last write to `res` asked to wait for 'drain' (the buffer is made at the first backpressure)
   */
  constructor(res: ServerResponse, budget: BufferBudget, blocked = false) {
    this.#res = res
    this.#budget = budget
    res.once('close', this.#onClose)
    if (blocked) this.#block()
  }

  /** Bytes held for the client now (memory and temporary file). */
  get held(): number {
    return this.#store === null ? 0 : this.#store.size - this.#drained
  }

  /** Whether bytes went to a temporary file. */
  get spilled(): boolean {
    return this.#store?.spilled ?? false
  }

  /**
   * Takes one upstream chunk.
   *
   * @param onResume called when the upstream may be read again, if this returns false
   * @returns false when the caps are reached: pause the upstream until `onResume`
   */
  write(chunk: Buffer, onResume: () => void): boolean {
    if (this.#closed) return true
    const res = this.#res
    if (this.#store === null || this.#store.size === this.#drained) {
      if (!this.#blocked) {
        if (!res.write(chunk)) this.#block()
        return true
      }
    }
    const store = this.#ensureStore()
    if (store.error !== null) {
      // The temporary file failed: the client cannot get a whole body.
      this.#res.destroy(store.error)
      return true
    }
    if (!store.fits(chunk.length)) {
      // Caps reached: hand the chunk on (the response holds it) and push back on the upstream.
      this.#onResume = onResume
      this.#pushBack(chunk)
      return false
    }
    return store.append(chunk, onResume)
  }

  /** Ends the body; the response ends once the client took every byte, with `trailers` when given. */
  end(trailers: Record<string, string> | null): void {
    this.#ended = true
    this.#trailers = trailers
    if (!this.#blocked) this.#drain()
  }

  /** Stops and frees what is held (the response is being destroyed). Idempotent. */
  destroy(): void {
    this.#onClose()
  }

  #ensureStore(): SpillStore {
    if (this.#store === null) this.#store = new SpillStore(this.#budget, false)
    return this.#store
  }

  /** Puts the chunk in the stored run anyway (past the caps) so the order holds; the upstream pauses meanwhile. */
  #pushBack(chunk: Buffer): void {
    const store = this.#ensureStore()
    if (store.size === this.#drained && !this.#blocked) {
      if (!this.#res.write(chunk)) this.#block()
      return
    }
    // Over the caps by one chunk at most: the upstream is paused until the client drains.
    this.#overflow.push(chunk)
  }

  /** Chunks beyond the caps, sent after the stored bytes (at most one per pause of the upstream). */
  #overflow: Buffer[] = []

  #block(): void {
    this.#blocked = true
    this.#res.once('drain', this.#onDrain)
  }

  #onDrain = (): void => {
    this.#blocked = false
    this.#drain()
  }

  /** Hands stored bytes to the response until it pushes back, then ends it when all went. */
  #drain(): void {
    if (this.#draining || this.#closed) return
    const store = this.#store
    if (store !== null && this.#drained < store.size) {
      this.#draining = true
      store.read(this.#drained, DRAIN_CHUNK, this.#onRead)
      return
    }
    while (this.#overflow.length > 0) {
      if (!this.#res.write(this.#overflow.shift() as Buffer)) return this.#block()
    }
    if (this.#onResume !== null) {
      const cb = this.#onResume
      this.#onResume = null
      cb()
      if (this.#blocked) return
    }
    if (this.#ended) this.#finish()
  }

  #onRead = (err: Error | null, bytes: Buffer): void => {
    this.#draining = false
    if (this.#closed) return
    if (err !== null) {
      // The stored body cannot be read back: the client cannot get a whole body.
      this.#res.destroy(err)
      return
    }
    if (bytes.length === 0) {
      // File writes still in progress: wait for them (a failure then shows on the next read).
      this.#draining = true
      ;(this.#store as SpillStore).flushed(this.#onFlushed)
      return
    }
    this.#drained += bytes.length
    if (this.#res.write(bytes)) this.#drain()
    else this.#block()
  }

  #onFlushed = (): void => {
    this.#draining = false
    this.#drain()
  }

  #finish(): void {
    const res = this.#res
    const trailers = this.#trailers
    this.#release()
    if (trailers !== null) res.addTrailers(trailers)
    res.end()
  }

  #release(): void {
    this.#closed = true
    this.#store?.close()
    this.#store = null
    this.#overflow = []
    this.#onResume = null
    this.#res.removeListener('close', this.#onClose)
    this.#res.removeListener('drain', this.#onDrain)
  }

  #onClose = (): void => {
    if (this.#closed) return
    this.#release()
  }
}

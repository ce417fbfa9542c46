/**
 * Request-body buffering (nginx `proxy_request_buffering on`): the whole body is read from
 * the client before an upstream connection is taken, in memory up to a size and then in a
 * temporary file, so a client that sends slowly holds no upstream connection, and every
 * try of the request can send the body again.
 */
import type { IncomingMessage } from 'node:http'
import { Readable } from 'node:stream'
import { GatewayError } from '../failures/classify.ts'
import { SpillStore, type BufferBudget } from './spill.ts'

/** Why a body could not be read; `code` is fixed for tests and callers. */
export class RequestBodyError extends Error {
  /**
   * - `too_large`: over `maxBytes` (answer 413, nginx `client_max_body_size`);
   * - `idle`: no byte for `idleTimeoutMs` (answer 408, nginx `client_body_timeout`);
   * - `client_closed`: the client went away before the end of the body;
   * - `storage`: the temporary file could not be written.
   */
  readonly code: 'too_large' | 'idle' | 'client_closed' | 'storage'
  constructor(code: RequestBodyError['code'], message: string) {
    super(message)
    this.code = code
  }
}

/** Options of {@link bufferRequestBody}. */
export interface RequestBufferOptions {
  /** Memory and temporary-file caps shared by the process. */
  budget: BufferBudget
  /** Largest body accepted in bytes (more is `too_large`), or null for no limit. */
  maxBytes: number | null
  /** Longest silence between two body chunks in ms (nginx `client_body_timeout`), or 0 for none. */
  idleTimeoutMs: number
}

/**
 * A request body that was read (in full, or up to the buffering caps), as a source of
 * streams: each try opens its own.
 */
export class BufferedBody {
  readonly #store: SpillStore
  readonly #req: IncomingMessage
  /** Whether the whole body is stored; when false the rest is read from the client by the first stream opened past the stored part. */
  readonly complete: boolean
  /** Bytes read from the client past the stored part (such a body cannot be sent again). */
  live = 0
  /** Largest body accepted in bytes, for the part read live. */
  readonly #maxBytes: number
  /** Longest client silence in ms for the part read live (0: none). */
  readonly #idleMs: number

  constructor(store: SpillStore, req: IncomingMessage, complete: boolean, maxBytes: number | null, idleMs: number) {
    this.#store = store
    this.#req = req
    this.complete = complete
    this.#maxBytes = maxBytes ?? Infinity
    this.#idleMs = idleMs
  }

  /** Bytes stored. */
  get size(): number {
    return this.#store.size
  }

  /** Whether part of the body went to a temporary file. */
  get spilled(): boolean {
    return this.#store.spilled
  }

  /** Whether another stream may still send the whole body (false once bytes were read live). */
  get replayable(): boolean {
    return this.live === 0
  }

  /**
   * A stream of the body from its first byte: the stored bytes, then (when not complete) the
   * rest from the client, which fails as a streamed body does (413 past the limit, 408 after
   * the client's silence); `waiting` says whether it waits for the client.
   */
  open(): Readable & { readonly waiting: boolean } {
    return new BodyStream(this, this.#store, this.#req, this.#maxBytes, this.#idleMs)
  }

  /** Frees memory and the temporary file; streams still open fail. Idempotent. */
  dispose(): void {
    this.#store.close()
  }
}

/**
 * Reads the body of `req` into memory then a temporary file, within the caps of `budget`.
 * When a cap is reached (memory and temporary-file space of the process, or the largest
 * temporary file), reading stops there and the body is returned incomplete: the rest then
 * streams from the client (nginx does the same when a temporary file cannot grow).
 *
 * @returns the buffered body
 * @throws {RequestBodyError} `too_large`, `idle`, `client_closed` or `storage`; the stored
 *   part is freed then
 */
export function bufferRequestBody(req: IncomingMessage, opts: RequestBufferOptions): Promise<BufferedBody> {
  return new Promise((resolve, reject) => {
    const store = new SpillStore(opts.budget, true)
    const max = opts.maxBytes ?? Infinity
    let timer: NodeJS.Timeout | null = null
    let last = performance.now()
    let done = false
    const finish = (err: RequestBodyError | null, complete = true): void => {
      if (done) return
      done = true
      if (timer !== null) clearTimeout(timer)
      req.removeListener('data', onData)
      req.removeListener('end', onEnd)
      req.removeListener('error', onError)
      req.removeListener('close', onClose)
      if (err !== null) {
        store.close()
        return reject(err)
      }
      if (!complete) req.pause()
      const wait = (): void => {
        if (store.error !== null) {
          store.close()
          return reject(new RequestBodyError('storage', `request body could not be buffered: ${store.error.message}`))
        }
        resolve(new BufferedBody(store, req, complete, opts.maxBytes, opts.idleTimeoutMs))
      }
      store.flushed(wait)
    }
    const onData = (chunk: Buffer): void => {
      last = performance.now()
      if (store.size + chunk.length > max) {
        return finish(new RequestBodyError('too_large', `request body larger than ${max} bytes`))
      }
      if (!store.fits(chunk.length)) {
        // Caps reached: this chunk and the rest stream from the client (put back once the stream is paused).
        finish(null, false)
        req.unshift(chunk)
        return
      }
      if (store.error !== null) return finish(new RequestBodyError('storage', `request body could not be buffered: ${store.error.message}`))
      if (!store.append(chunk, onWritable)) req.pause()
    }
    const onWritable = (): void => {
      if (!done) req.resume()
    }
    const onEnd = (): void => finish(null)
    const onError = (err: Error): void => finish(new RequestBodyError('client_closed', `client connection failed while sending the body: ${err.message}`))
    const onClose = (): void => {
      if (!req.complete) finish(new RequestBodyError('client_closed', 'client closed the connection before the end of the request body'))
    }
    const onTimer = (): void => {
      timer = null
      const left = last + opts.idleTimeoutMs - performance.now()
      if (left > 1) {
        timer = setTimeout(onTimer, Math.ceil(left))
        return
      }
      finish(new RequestBodyError('idle', `client sent no request body bytes for ${opts.idleTimeoutMs}ms (body_idle)`))
    }
    if (req.readableEnded) return finish(null)
    if (opts.idleTimeoutMs > 0) timer = setTimeout(onTimer, opts.idleTimeoutMs)
    req.on('data', onData)
    req.once('end', onEnd)
    req.once('error', onError)
    req.once('close', onClose)
  })
}

/** One stream of a {@link BufferedBody}: the stored bytes in order, then the client's rest. */
class BodyStream extends Readable {
  readonly #body: BufferedBody
  readonly #store: SpillStore
  readonly #req: IncomingMessage
  readonly #max: number
  readonly #idleMs: number
  #position = 0
  #reading = false
  #live = false
  #idle: NodeJS.Timeout | null = null
  /** Whether a read waits for the client (the live part, the client silent). */
  waiting = false

  constructor(body: BufferedBody, store: SpillStore, req: IncomingMessage, max: number, idleMs: number) {
    super()
    this.#body = body
    this.#store = store
    this.#req = req
    this.#max = max
    this.#idleMs = idleMs
  }

  override _read(size: number): void {
    if (this.#reading) return
    if (this.#position < this.#store.size) {
      this.#reading = true
      this.#store.read(this.#position, Math.max(size, 16 * 1024), this.#onStored)
      return
    }
    if (this.#body.complete) return void this.push(null)
    this.#readLive()
  }

  #onStored = (err: Error | null, bytes: Buffer): void => {
    this.#reading = false
    if (err !== null) return void this.destroy(err)
    if (bytes.length === 0) return void this.destroy(new Error('buffered request body is shorter than stored'))
    this.#position += bytes.length
    if (this.push(bytes)) this._read(16 * 1024)
  }

  #readLive(): void {
    const req = this.#req
    if (!this.#live) {
      this.#live = true
      req.on('data', this.#onLive)
      req.once('end', this.#onLiveEnd)
      req.once('error', this.#onLiveError)
    }
    this.waiting = true
    if (this.#idleMs > 0) {
      if (this.#idle === null) this.#idle = setTimeout(onLiveIdle, this.#idleMs, this, this.#idleMs)
      else this.#idle.refresh()
    }
    req.resume()
  }

  #onLive = (chunk: Buffer): void => {
    this.#body.live += chunk.length
    if (this.#store.size + this.#body.live > this.#max) {
      this.destroy(new GatewayError('http_request_denied.body_too_large', `request body larger than ${this.#max} bytes`))
      return
    }
    this.#idle?.refresh()
    if (!this.push(chunk)) {
      // The upstream is the slow side now: no client silence is counted until it reads again.
      this.#stopIdle()
      this.#req.pause()
    }
  }

  #onLiveEnd = (): void => {
    this.#stopIdle()
    this.push(null)
  }

  #stopIdle(): void {
    this.waiting = false
    if (this.#idle !== null) clearTimeout(this.#idle)
    this.#idle = null
  }

  #onLiveError = (err: Error): void => {
    this.destroy(err)
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.#stopIdle()
    if (this.#live) {
      this.#req.removeListener('data', this.#onLive)
      this.#req.removeListener('end', this.#onLiveEnd)
      this.#req.removeListener('error', this.#onLiveError)
      this.#req.pause()
    }
    cb(err)
  }
}

function onLiveIdle(stream: BodyStream, idleMs: number): void {
  if (!stream.waiting || stream.destroyed) return
  stream.destroy(new GatewayError('http_request_error.client_body_timeout', `client sent no request body bytes for ${idleMs}ms (body_idle)`))
}

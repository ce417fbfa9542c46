/**
 * Write coalescing per event-loop turn: what Portico writes to its HTTP/1.1 connections
 * during one turn of the event loop leaves when the turn's I/O callbacks are done, back to
 * back and in one system call per connection, instead of one call per write as it happens.
 *
 * Under load one turn handles many connections: each upstream response that arrived, each
 * request that was read. Written as they come, every response wakes its client and every
 * request wakes its upstream, and the peer has often gone back to sleep between two of
 * them; held to the end of the turn, the writes leave together and a peer serving many
 * connections is woken once for all of them. A response written in pieces (head, body,
 * chunk framing) also leaves in one segment. The cost is latency of at most the rest of
 * the turn, which is spent on other requests, not waiting. On the loopback benchmark this
 * took Portico's CPU time per proxied request from 117 to 69 µs (bench/README.md).
 *
 * The same idea as uWebSockets' corking (what a handler writes is buffered and sent
 * together when it returns) and Netty's `FlushConsolidationHandler`. The mechanism is Node's `writable.cork()`,
 * undone by one `setImmediate` (the check phase, right after the turn's I/O callbacks);
 * `http.ServerResponse.end()` uncorks its socket fully, so {@link CoalescingResponse}
 * defers the end itself to that moment.
 */
import { http } from './node-http.ts'
import type { Writable } from 'node:stream'
import { logger } from './logger.ts'
import { SlotSet } from './slot-set.ts'

/** Streams corked by {@link coalesceWrites} in this turn. */
const held = new SlotSet<Writable>()
/** Responses whose `end()` waits for the end of this turn. */
let ending: CoalescingResponse[] = []
let scheduled = false

function schedule(): void {
  if (scheduled) return
  scheduled = true
  setImmediate(releaseTurn)
}

function releaseTurn(): void {
  scheduled = false
  // Ends first: each uncorks its connection fully, so head, body and end leave in one write.
  const ends = ending
  ending = []
  for (const res of ends) res.endDeferred()
  const streams = held.take()
  // A stream ended or destroyed meanwhile was uncorked by `end()` or needs nothing: uncork is then a no-op.
  for (const s of streams) {
    try {
      s.uncork()
    } catch (err) {
      // Write errors reach the stream's 'error' event; a throw here would stop the other streams' release.
      logger.error({ err }, 'releasing a connection\'s writes failed; it is closed')
      s.destroy()
    }
  }
}

/**
 * Holds `stream`'s writes until the end of this event-loop turn (the next `setImmediate`
 * callbacks), then sends them together. Calling it again in the same turn does nothing.
 * `stream.end()` sends what was held at once (Node's `Writable.end` uncorks), so a
 * connection closed after its last write still sends that write first. Backpressure is
 * kept: `write` still returns false past the high-water mark, and `'drain'` follows the
 * release.
 *
 * @param stream a socket (net or TLS) or any Writable; a destroyed one is left alone
 */
export function coalesceWrites(stream: Writable): void {
  if (stream.destroyed || !held.add(stream)) return
  stream.cork()
  schedule()
}

/**
 * Where a server keeps its send timeout, in ms (nginx `send_timeout`): the longest a
 * connection may hold response bytes its client does not take. Absent or 0: none.
 */
export const SEND_TIMEOUT = Symbol('portico.sendTimeout')
/** Set on a connection closed because its client took no response byte for the send timeout. */
export const SEND_TIMED_OUT = Symbol('portico.sendTimedOut')
const SEND_TIMER = Symbol('portico.sendTimer')

type GuardedSocket = Writable & {
  server?: { [SEND_TIMEOUT]?: number } | null
  /** libuv's bytes not yet taken by the kernel (TCP); it shrinks with partial writes, which writableLength does not show. */
  _handle?: { writeQueueSize?: number } | null
  [SEND_TIMER]?: NodeJS.Timeout
  [SEND_TIMED_OUT]?: boolean
  writableNeedDrain: boolean
  destroy(): void
}

/**
 * Bounds how long `socket` may hold response bytes its client does not take: armed when
 * the connection's buffer is over its high-water mark, it closes the connection when the
 * buffer made no progress for the server's {@link SEND_TIMEOUT}; progress re-arms it, and
 * `'drain'` ends it. A slow reader thus never holds a response (and what it holds: an
 * upstream connection, a temporary file) forever. Costs nothing while clients keep up.
 */
function guardSend(socket: GuardedSocket): void {
  const ms = socket.server?.[SEND_TIMEOUT]
  if (!ms || socket[SEND_TIMER] !== undefined || socket.destroyed) return
  socket[SEND_TIMER] = setTimeout(onSendTimeout, ms, socket, unsent(socket), ms)
  socket.once('drain', endSendGuard)
}

/** Bytes the connection holds that the kernel has not taken yet. */
function unsent(socket: GuardedSocket): number {
  return socket.writableLength + (socket._handle?.writeQueueSize ?? 0)
}

function onSendTimeout(socket: GuardedSocket, pending: number, ms: number): void {
  if (socket.destroyed || socket.writableLength === 0) {
    socket[SEND_TIMER] = undefined
    return
  }
  const now = unsent(socket)
  if (now < pending) {
    // The client took some bytes: it has another send timeout for the rest.
    socket[SEND_TIMER] = setTimeout(onSendTimeout, ms, socket, now, ms)
    return
  }
  socket[SEND_TIMER] = undefined
  socket[SEND_TIMED_OUT] = true
  socket.destroy()
}

function endSendGuard(this: GuardedSocket): void {
  const t = this[SEND_TIMER]
  if (t !== undefined) clearTimeout(t)
  this[SEND_TIMER] = undefined
}

/**
 * `http.ServerResponse` whose writes to the connection are coalesced per event-loop turn
 * ({@link coalesceWrites}), and whose `end()` takes effect at the end of the turn: error
 * pages, cache hits and relayed responses alike. Given to HTTP/1.1 servers as their
 * `ServerResponse` class (`http.createServer`) or `Http1ServerResponse`
 * (`http2.createSecureServer` with `allowHTTP1`).
 *
 * Until the deferred end runs, `writableEnded` is false and `'finish'` has not come; the
 * response's framing (Content-Length or chunked) is decided by Node's `end()` when it
 * runs, from the same arguments, so it is what an immediate end would have sent. An end
 * on a response without a connection yet (a pipelined request waiting its turn) or one
 * destroyed meanwhile runs at once, as Node's own.
 */
export class CoalescingResponse<Request extends http.IncomingMessage = http.IncomingMessage> extends http.ServerResponse<Request> {
  /** Whether an `end()` waits for the end of the turn, and its arguments. */
  #endPending = false
  #endChunk: unknown = undefined
  #endEncoding: unknown = undefined
  #endCallback: unknown = undefined

  override write(chunk: unknown, encoding?: unknown, callback?: unknown): boolean {
    const socket = this.socket
    if (socket !== null) coalesceWrites(socket)
    const ok = (super.write as (...args: unknown[]) => boolean)(chunk, encoding, callback)
    if (!ok && socket !== null) guardSend(socket as unknown as GuardedSocket)
    return ok
  }

  override end(chunk?: unknown, encoding?: unknown, callback?: unknown): this {
    // A second end() in the same turn runs after the first, as with Node's own.
    if (this.#endPending) this.endDeferred()
    if (this.socket === null || this.destroyed || this.writableEnded) return (super.end as (...args: unknown[]) => this)(chunk, encoding, callback)
    coalesceWrites(this.socket)
    this.#endPending = true
    this.#endChunk = chunk
    this.#endEncoding = encoding
    this.#endCallback = callback
    ending.push(this)
    schedule()
    return this
  }

  /**
   * Runs the `end()` deferred to the end of the turn, if one is pending. An error thrown
   * by Node's `end` (which would have reached the caller of an immediate end) is logged
   * and the connection destroyed, so it neither stops the other responses of the turn nor
   * leaves this one hanging.
   */
  endDeferred(): void {
    if (!this.#endPending) return
    const chunk = this.#endChunk
    const encoding = this.#endEncoding
    const callback = this.#endCallback
    this.#endPending = false
    this.#endChunk = this.#endEncoding = this.#endCallback = undefined
    try {
      ;(super.end as (...a: unknown[]) => this)(chunk, encoding, callback)
      // A large last write the client has not taken yet keeps the connection: bounded too.
      const socket = this.socket as unknown as GuardedSocket | null
      if (socket !== null && socket.writableNeedDrain) guardSend(socket)
    } catch (err) {
      logger.error({ err }, 'ending a response failed; its connection is closed')
      this.destroy()
    }
  }
}

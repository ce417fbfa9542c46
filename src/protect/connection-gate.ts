/**
 * Per-connection admission: how many requests of one client connection are handled at
 * once. HTTP/1.1 pipelined requests are handled one at a time, in order, as nginx does
 * (Node's server parses them ahead and emits each at once); HTTP/2 streams beyond
 * `max_requests_per_connection` wait in order for an earlier stream of the connection to
 * end. A connection whose requests pile up stops being read (HTTP/1.1) until they drain.
 *
 * HTTP/2 streams start at the end of the event-loop turn that read them, not while the
 * frames are parsed: a stream the client reset in the same read (HEADERS then RST_STREAM,
 * the "rapid reset" attack, CVE-2023-44487) is then seen closed and dropped before it takes
 * an upstream connection.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'

/** Limits of one connection (config `limits`). */
export interface ConnectionLimits {
  /** Requests of one HTTP/2 connection handled at once; more wait in order. HTTP/1.1 is always 1. */
  maxRequestsPerConnection: number
  /** Waiting requests of one HTTP/1.1 connection beyond which the connection is not read until they drain. */
  maxQueuedPerConnection: number
}

/** What a gate keeps on each connection (the socket, or the HTTP/2 session). */
class ConnectionState {
  readonly gate: ConnectionGate
  readonly h2: boolean
  active = 0
  /** Waiting requests, as pairs: request, response, request, response... */
  readonly queue: Array<IncomingMessage | ServerResponse> = []
  head = 0
  /** The HTTP/1.1 socket this gate paused, or null. */
  paused: { pause(): unknown; resume(): unknown } | null = null
  /** Whether the HTTP/2 streams read in this turn are due to start at its end. */
  scheduled = false

  constructor(gate: ConnectionGate, h2: boolean) {
    this.gate = gate
    this.h2 = h2
  }

  get waiting(): number {
    return (this.queue.length - this.head) / 2
  }
}

const STATE = Symbol('portico.connection-gate')
/** The state a handled response releases on close. */
const HELD = Symbol('portico.connection-gate.held')

type Held = ServerResponse & { [HELD]?: ConnectionState }
type Carrier = object & { [STATE]?: ConnectionState }

/**
 * Wraps a request handler so that each client connection has a bounded number of requests
 * in progress; the others wait, in order, and are started as earlier ones end (their
 * response closes: finished, or the connection went away).
 *
 * Counters: {@link waiting} (requests waiting now across connections), {@link paused}.
 */
export class ConnectionGate {
  #limits: ConnectionLimits
  readonly #handler: (req: IncomingMessage, res: ServerResponse) => void
  /** Requests waiting now, over all connections. */
  waiting = 0
  /** Times a connection stopped being read because its waiting requests reached the bound. */
  paused = 0

  /**
   * @param limits read for each request (a reload may change them)
   * @param handler the request handler (the lifecycle driver)
   */
  constructor(limits: ConnectionLimits, handler: (req: IncomingMessage, res: ServerResponse) => void) {
    this.#limits = limits
    this.#handler = handler
  }

  /** Sets the limits of requests to come. */
  set limits(limits: ConnectionLimits) {
    this.#limits = limits
  }

  /** The request listener to give the server. */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    // HTTP/2 compatibility requests share their session; HTTP/1.1 ones their socket (an "HTTP/2.0" request line on HTTP/1.1 is HTTP/1.1 here).
    const stream = (req as unknown as { stream?: { session: object } }).stream
    const h2 = stream !== undefined
    const carrier = (h2 ? stream.session : req.socket) as Carrier
    let state = carrier[STATE]
    if (state === undefined) {
      state = new ConnectionState(this, h2)
      carrier[STATE] = state
    }
    if (h2) {
      // Started at the end of the turn, once the frames read with this HEADERS (an RST_STREAM, say) are parsed too.
      state.queue.push(req, res)
      this.waiting++
      if (!state.scheduled) {
        state.scheduled = true
        setImmediate(startScheduled, state)
      }
      return
    }
    if (state.active < 1 && state.waiting === 0) {
      this.#start(state, req, res)
      return
    }
    state.queue.push(req, res)
    this.waiting++
    if (state.paused === null && state.waiting >= this.#limits.maxQueuedPerConnection) {
      // Stop reading this connection: the requests already parsed wait their turn.
      state.paused = req.socket
      req.socket.pause()
      this.paused++
    }
  }

  #start(state: ConnectionState, req: IncomingMessage, res: ServerResponse): void {
    state.active++
    ;(res as Held)[HELD] = state
    res.on('close', onHeldClose)
    this.#handler(req, res)
  }

  /** A handled response closed: start the next live request of the connection. */
  release(state: ConnectionState): void {
    state.active--
    this.drain(state)
  }

  /** Starts the connection's waiting requests that its limit lets in, dropping those whose client went away. */
  drain(state: ConnectionState): void {
    const h2 = state.h2
    const limit = h2 ? this.#limits.maxRequestsPerConnection : 1
    while (state.active < limit && state.waiting > 0) {
      const req = state.queue[state.head] as IncomingMessage
      const res = state.queue[state.head + 1] as ServerResponse
      state.queue[state.head] = state.queue[state.head + 1] = undefined as unknown as IncomingMessage
      state.head += 2
      this.waiting--
      // A request whose connection (or HTTP/2 stream) went away while it waited is dropped unanswered, as nginx drops unread pipelined requests.
      if (isGone(req, res, h2)) continue
      this.#start(state, req, res)
    }
    if (state.head > 64 && state.head * 2 > state.queue.length) {
      state.queue.splice(0, state.head)
      state.head = 0
    }
    if (state.paused !== null && state.waiting < Math.max(1, this.#limits.maxQueuedPerConnection >> 1)) {
      state.paused.resume()
      state.paused = null
    }
  }
}

/** Whether a waiting request's client went away (its HTTP/1.1 connection, or its HTTP/2 stream). */
function isGone(req: IncomingMessage, res: ServerResponse, h2: boolean): boolean {
  if (h2) {
    const stream = (res as unknown as { stream?: { destroyed: boolean; closed: boolean } }).stream
    return stream === undefined || stream.destroyed || stream.closed
  }
  return res.destroyed || res.writableEnded || req.socket === null || req.socket.destroyed
}

/** The end of a turn that read HTTP/2 streams of a session: start them (setImmediate callback, no closure). */
function startScheduled(state: ConnectionState): void {
  state.scheduled = false
  state.gate.drain(state)
}

/** Registered on each handled response (one function for all: no closure per request). */
function onHeldClose(this: Held): void {
  const state = this[HELD]
  if (state === undefined) return
  this[HELD] = undefined
  state.gate.release(state)
}

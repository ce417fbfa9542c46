/**
 * Portico's HTTP/1.1 client: the keep-alive connection pool of one endpoint.
 *
 * It speaks undici's dispatcher interface (`dispatch(options, handler)` with the
 * controller-style handler: `onRequestStart`, `onResponseStart`, `onResponseData`,
 * `onResponseEnd`, `onResponseError`, `onRequestUpgrade`), so undici's `request()` and
 * friends work on it (`request(url, { dispatcher: pool })`), and adds what the proxy needs at each step of an exchange:
 * `onSocket(socket)` before the first request byte is written, a connection limit with a
 * FIFO queue whose entries can be cancelled without costing a connection, and
 * `fresh: true` for a try that must not reuse a pooled connection (the keep-alive race).
 *
 * Why not undici's own Pool: per request it costs about 1.4× what this does on a
 * small response (measured side by side, see bench/README.md), and the proxy owns every
 * timer anyway. The pool keeps the books (idle connections, queue, limits, the idle
 * sweep); each connection writes its requests and reads its responses
 * (./connection.ts) with a parser of its own (./parser.ts).
 */
import net from 'node:net'
import type { Duplex } from 'node:stream'
import { EventEmitter } from 'node:events'
import type { Dispatcher, buildConnector } from 'undici'
import { SlotSet } from '../../lib/slot-set.ts'
import { Http1Connection, Http1Controller, handlerThrew, type Http1DispatchOptions, type Http1Handler } from './connection.ts'

/** Options of an {@link Http1Pool}. */
export interface Http1PoolOptions {
  /** `http:` or `https:`. */
  protocol: 'http:' | 'https:'
  /** Host name or IP literal to connect to (IPv6 without brackets). */
  hostname: string
  port: number
  /** `Host` field sent when a request carries none: `host[:port]` as in the URL. */
  host: string
  /** Opens a connection (TCP, or TLS for https:), undici's connector signature. */
  connect: buildConnector.connector
  /** Most connections open at once (nginx `max_conns`); requests beyond wait in a FIFO queue. */
  connections: number
  /** How long an idle connection is kept, in ms (nginx `keepalive_timeout` of an upstream block). */
  keepAliveTimeoutMs: number
  /** Subtracted from an upstream's `Keep-Alive: timeout=N`, in ms, so Portico closes first. */
  keepAliveTimeoutThresholdMs: number
  /** Largest response header section accepted, in bytes (status line and fields). */
  maxHeaderSize: number
}

/** Connection and queue counts, named as undici's `Pool.stats`. */
export interface Http1PoolStats {
  /** Connections open (idle or busy). */
  connected: number
  /** Idle connections. */
  free: number
  /** Requests waiting for a connection. */
  pending: number
  /** Requests being exchanged on a connection (or opening the fresh connection they asked for). */
  running: number
  /** Requests waiting or running. */
  size: number
}

/** The pool was closed or destroyed with the request still queued. */
class PoolClosedError extends Error {
  readonly code = 'UND_ERR_CLOSED'
  constructor() {
    super('the endpoint\'s connection pool is closed')
  }
}

/** The context given to `onRequestStart` (undici passes per-request state there; this pool has none). */
const NO_CONTEXT = Object.freeze({})
const SWEEP_MS = 1000

/**
 * The keep-alive HTTP/1.1 connection pool of one endpoint, one request per connection at
 * a time (no pipelining).
 */
// It extends EventEmitter, as undici's Dispatcher does, rather than Dispatcher itself:
// importing undici's index to get that class loads all of undici (fetch, WebSocket, cache
// stores, mocks), several MB per process that serving never uses.
export class Http1Pool extends EventEmitter {
  readonly options: Http1PoolOptions
  readonly #idle: Http1Connection[] = []
  readonly #all = new SlotSet<Http1Connection>()
  readonly #queue: Http1Controller[] = []
  /** Fresh requests whose own connection is being opened (they are not in the queue). */
  readonly #opening = new Set<Http1Controller>()
  /** Connections being opened, each for the request that asked for it. */
  #connecting = 0
  #running = 0
  #closing: Promise<void> | null = null
  #closeWaiters: (() => void)[] = []
  #destroyed = false
  #sweeper: NodeJS.Timeout | null = null

  constructor(options: Http1PoolOptions) {
    super()
    this.options = options
  }

  /** Whether `close()` or `destroy()` was called (undici's `closed`). */
  get closed(): boolean {
    return this.#closing !== null
  }

  /** Connection and queue counts (undici `Pool.stats` names). */
  get stats(): Http1PoolStats {
    const pending = this.#queue.length
    // #running counts every request not yet ended, queued ones included.
    const running = this.#running - pending
    return { connected: this.#all.size, free: this.#idle.length, pending, running, size: pending + running }
  }

  /**
   * Sends a request. The handler's `onRequestStart` is called at once with the controller
   * (so a queued request can be aborted), `onSocket` once a connection is assigned.
   *
   * @returns false when the pool is closed (the handler got `onResponseError`), else true
   */
  dispatch(options: Dispatcher.DispatchOptions | Http1DispatchOptions, handler: Dispatcher.DispatchHandler | Http1Handler): boolean {
    const c = new Http1Controller(this, options as Http1DispatchOptions, handler as Http1Handler)
    const signal = (options as Http1DispatchOptions).signal
    if (signal) {
      if (signal.aborted) {
        c.fail(signal.reason as Error)
        return true
      }
      c.watch(signal)
    }
    try { c.handler.onRequestStart?.(c, NO_CONTEXT) } catch (thrown) { handlerThrew(c, thrown) }
    if (c.done) return true
    if (this.#closing !== null || this.#destroyed) {
      c.fail(new PoolClosedError())
      return false
    }
    this.#running++
    c.counted = true
    if (c.options.fresh === true) {
      this.#opening.add(c)
      this.#open(c)
      return true
    }
    const conn = this.#takeIdle()
    if (conn !== null) {
      conn.start(c)
    } else {
      this.#queue.push(c)
      if (this.#all.size + this.#connecting < this.options.connections) this.#open(c)
    }
    return true
  }

  /** An idle connection not past its keep-alive time, or null. */
  #takeIdle(): Http1Connection | null {
    const now = performance.now()
    let conn: Http1Connection | undefined
    while ((conn = this.#idle.pop()) !== undefined) {
      if (now - conn.idleSince < conn.keepAliveMs && !conn.closed) return conn
      conn.destroy()
    }
    return null
  }

  /** Opens a connection on behalf of `c` (queued, or fresh). */
  #open(c: Http1Controller): void {
    this.#connecting++
    const o = this.options
    this.options.connect({ hostname: o.hostname, host: o.host, port: String(o.port), protocol: o.protocol, servername: undefined } as buildConnector.Options, (err, socket) => {
      this.#connecting--
      this.#opening.delete(c)
      if (err !== null || socket === null) {
        // The request it was opened for learns why; others keep waiting for other connections.
        const i = this.#queue.indexOf(c)
        if (i >= 0) this.#queue.splice(i, 1)
        if (c.conn === null) c.fail(err ?? new Error('connect failed'))
        this.#drain()
        return
      }
      const conn = new Http1Connection(this, socket as Duplex)
      this.#all.add(conn)
      if (this.#destroyed) {
        conn.destroy()
        return
      }
      if (c.options.fresh === true && !c.done && c.conn === null) {
        conn.start(c)
        return
      }
      this.release(conn)
    })
  }

  /** A connection finished its exchange and may be reused: serve the queue or keep it idle. */
  release(conn: Http1Connection): void {
    if (this.#all.has(conn) && conn.current === null) {
      const next = this.#queue.shift()
      if (next !== undefined) {
        conn.start(next)
        return
      }
      if (this.#closing !== null || this.#all.size > this.options.connections) {
        conn.destroy()
        return
      }
      conn.idleSince = performance.now()
      this.#idle.push(conn)
      this.#sweeper ??= setInterval(this.#sweep, SWEEP_MS).unref()
    }
    this.#checkClosed()
  }

  /** Removes a closed (or upgraded) connection from the pool's books. */
  forget(conn: Http1Connection): void {
    if (!this.#all.delete(conn)) return
    const i = this.#idle.indexOf(conn)
    if (i >= 0) this.#idle.splice(i, 1)
    this.#drain()
  }

  /** Called by a request's controller when it ends (one way or another). */
  settled(): void {
    this.#running--
  }

  /** Removes a queued request (its controller aborted it). */
  unqueue(c: Http1Controller): void {
    const i = this.#queue.indexOf(c)
    if (i >= 0) this.#queue.splice(i, 1)
  }

  /** Opens connections for queued requests while under the limit. */
  #drain(): void {
    while (this.#queue.length > this.#connecting && this.#all.size + this.#connecting < this.options.connections && !this.#destroyed) {
      const c = this.#queue[this.#connecting]
      if (c === undefined) break
      this.#open(c)
    }
    this.#checkClosed()
  }

  #sweep = (): void => {
    const now = performance.now()
    for (let i = this.#idle.length - 1; i >= 0; i--) {
      const conn = this.#idle[i]
      if (now - conn.idleSince >= conn.keepAliveMs) conn.destroy()
    }
    if (this.#idle.length === 0 && this.#sweeper !== null) {
      clearInterval(this.#sweeper)
      this.#sweeper = null
    }
  }

  #checkClosed(): void {
    if (this.#closing === null) return
    for (const conn of [...this.#idle]) conn.destroy()
    if (this.#all.size === 0 && this.#queue.length === 0 && this.#connecting === 0) {
      if (this.#sweeper !== null) clearInterval(this.#sweeper)
      this.#sweeper = null
      for (const w of this.#closeWaiters.splice(0)) w()
    }
  }

  /** Stops taking requests, closes idle connections, and resolves once busy ones finished. */
  close(): Promise<void>
  close(callback: () => void): void
  close(callback?: () => void): Promise<void> | void {
    this.#closing ??= new Promise<void>((resolve) => { this.#closeWaiters.push(resolve) })
    this.#checkClosed()
    if (callback) {
      void this.#closing.then(callback)
      return
    }
    return this.#closing
  }

  /** Closes every connection at once; queued and running requests fail with `err`. */
  destroy(err?: Error | null): Promise<void>
  destroy(callback: () => void): void
  destroy(err: Error | null, callback: () => void): void
  destroy(a?: Error | null | (() => void), b?: () => void): Promise<void> | void {
    const callback = typeof a === 'function' ? a : b
    const err = (typeof a === 'function' ? null : a) ?? new PoolClosedError()
    this.#destroyed = true
    this.#closing ??= new Promise<void>((resolve) => { this.#closeWaiters.push(resolve) })
    for (const c of this.#queue.splice(0)) c.fail(err)
    for (const c of this.#opening) c.fail(err)
    this.#opening.clear()
    for (const conn of [...this.#all]) {
      const c = conn.current
      conn.destroy()
      c?.fail(err)
    }
    this.#checkClosed()
    if (callback) {
      void this.#closing.then(callback)
      return
    }
    return this.#closing
  }
}

/** The `Host` field value of an endpoint: an IPv6 literal in brackets, the port left out when it is the scheme's default. */
export function hostField(hostname: string, port: number, defaultPort: number): string {
  const h = net.isIPv6(hostname) ? `[${hostname}]` : hostname
  return port === defaultPort ? h : `${h}:${port}`
}

/**
 * Bookkeeping every lab server shares: loopback-only binding, counters, tracked sockets
 * and timers, and a close() that leaves no handle behind.
 */
import net from 'node:net'
import type { FaultMode, LabServer } from './types.ts'

/** Error thrown when a lab server is asked to bind outside loopback. */
export class LabHostError extends Error {
  readonly code = 'ERR_LAB_HOST_NOT_LOOPBACK'
  constructor(host: string) {
    super(`lab servers bind to loopback only: "${host}" is not in 127.0.0.0/8 or ::1 (use 127.0.0.1 or ::1)`)
    this.name = 'LabHostError'
  }
}

/**
 * Checks that `host` is a loopback IP literal (127.0.0.0/8 or ::1). Names such as
 * `localhost` are refused too: what they resolve to is not ours to decide.
 *
 * @throws {LabHostError} (code `ERR_LAB_HOST_NOT_LOOPBACK`) for anything else
 */
export function assertLoopback(host: string): void {
  const family = net.isIP(host)
  if (family === 4 && LOOPBACK.check(host, 'ipv4')) return
  if (family === 6 && LOOPBACK.check(host, 'ipv6')) return
  throw new LabHostError(host)
}

const LOOPBACK = new net.BlockList()
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4')
LOOPBACK.addAddress('::1', 'ipv6')

/** Formats host and port as URL authority, bracketing IPv6 literals. */
export function authority(host: string, port: number): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`
}

/**
 * Per-server state: counters read by {@link LabServer}, and every socket and timer the
 * server created, so close() can end them all.
 */
export class LabContext {
  connections = 0
  requests = 0
  closed = false
  readonly sockets = new Set<net.Socket>()
  readonly timers = new Set<NodeJS.Timeout>()

  /** Counts an accepted connection and keeps it until it closes. Errors are expected here (faults), so they are swallowed. */
  track(socket: net.Socket): void {
    this.connections++
    this.sockets.add(socket)
    socket.on('error', () => {})
    socket.once('close', () => this.sockets.delete(socket))
  }

  /** A setTimeout that close() clears; `ms` in milliseconds. */
  after(ms: number, fn: () => void): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.timers.delete(t)
      fn()
    }, ms)
    this.timers.add(t)
    return t
  }

  /** A setInterval that close() clears; `ms` in milliseconds. */
  every(ms: number, fn: () => void): NodeJS.Timeout {
    const t = setInterval(fn, ms)
    this.timers.add(t)
    return t
  }

  /** Clears a timer made by {@link after} or {@link every}. */
  cancel(t: NodeJS.Timeout | undefined): void {
    if (!t) return
    clearTimeout(t)
    this.timers.delete(t)
  }

  /** Clears every timer and destroys every socket. */
  teardown(): void {
    this.closed = true
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    for (const s of this.sockets) s.destroy()
    this.sockets.clear()
  }
}

/** What {@link labServer} needs to describe a running lab server. */
export interface LabHandle {
  mode: FaultMode
  url: string
  host: string
  port: number
  context: LabContext
  /** Releases the mode's own resources (listener, worker); called once, after the context's sockets and timers are gone. */
  release(): Promise<void>
}

/** Builds the public {@link LabServer} view of a running lab, with an idempotent close(). */
export function labServer(handle: LabHandle): LabServer {
  const { mode, url, host, port, context } = handle
  let closing: Promise<void> | undefined
  return {
    mode, url, host, port,
    get connections() { return context.connections },
    get requests() { return context.requests },
    close() {
      closing ??= (async () => {
        context.teardown()
        await handle.release()
        // Closed handles are released in libuv's close phase, which runs after the check
        // phase of setImmediate: two turns make sure callers that look for open handles see none.
        for (let turn = 0; turn < 2; turn++) await new Promise((resolve) => setImmediate(resolve))
      })()
      return closing
    },
  }
}

/**
 * Binds `server` on a loopback address, counting and tracking every connection, and
 * returns the bound port.
 *
 * @throws {LabHostError} when `host` is not loopback
 * @throws the listen error (e.g. `EADDRINUSE`) when binding fails
 */
export async function listenLoopback(server: net.Server, context: LabContext, host: string, port: number): Promise<number> {
  assertLoopback(host)
  server.on('connection', (socket: net.Socket) => {
    // A connection that lands after close() started must not outlive it.
    if (context.closed) return void socket.destroy()
    context.track(socket)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host, port }, () => {
      server.off('error', reject)
      resolve()
    })
  })
  return (server.address() as net.AddressInfo).port
}

/** Closes a listener; resolves when it is closed (or already was). */
export function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()))
}

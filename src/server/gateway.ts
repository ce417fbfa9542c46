/**
 * The gateway: listeners, the runtime in force, and the access log, started and stopped
 * together. `portico serve`, the demo and the tests all run Portico through this.
 */
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { Config, ListenerConfig } from '../config/schema.ts'
import { createAccessLog, type AccessLogSink } from '../observe/access-log.ts'
import { createProxyHandler } from '../proxy/driver.ts'
import { buildRuntime, retireRuntime, type Runtime } from '../proxy/runtime.ts'

/** Options of a gateway beyond the config. */
export interface GatewayOptions {
  /** Access log sink; default from `config.access_log`. */
  accessLog?: AccessLogSink
}

/** A running listener. */
export interface RunningListener {
  readonly config: ListenerConfig
  readonly server: http.Server
  /** Bound address (the real port when the config said port 0). */
  readonly address: AddressInfo
}

/** Splits `host:port` / `[v6]:port`. @throws {Error} on a malformed address */
export function splitAddress(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(address)
  if (!m) throw new Error(`invalid address "${address}": expected host:port`)
  return { host: m[1] ?? m[2], port: Number(m[3]) }
}

/** Portico's running state. */
export class Gateway {
  #runtime: Runtime
  readonly accessLog: AccessLogSink
  readonly listeners: RunningListener[] = []
  readonly #sockets = new Set<Socket>()

  constructor(config: Config, opts: GatewayOptions = {}) {
    this.#runtime = buildRuntime(config)
    this.accessLog = opts.accessLog ?? createAccessLog(config.access_log.format, config.access_log.path)
  }

  /** The runtime in force. */
  get runtime(): Runtime {
    return this.#runtime
  }

  /** Starts every listener. @throws {Error} when an address cannot be bound (EADDRINUSE, EACCES) */
  async start(): Promise<void> {
    for (const lc of this.#runtime.config.listeners) {
      const server = http.createServer({
        maxHeaderSize: lc.max_header_size,
        headersTimeout: lc.timeouts.header_read,
        // Portico runs body idle timers itself; Node's whole-request timeout would cut long uploads.
        requestTimeout: 0,
        keepAliveTimeout: lc.timeouts.keepalive,
        connectionsCheckingInterval: 250,
        noDelay: true,
      }, createProxyHandler(() => this.#runtime, this.accessLog, 'http'))
      server.keepAliveTimeout = lc.timeouts.keepalive
      server.on('connection', (s: Socket) => {
        this.#sockets.add(s)
        s.once('close', () => this.#sockets.delete(s))
      })
      const { host, port } = splitAddress(lc.address)
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(port, host, () => {
          server.removeListener('error', reject)
          resolve()
        })
      })
      this.listeners.push({ config: lc, server, address: server.address() as AddressInfo })
    }
  }

  /** Swaps in a new config; pools of unchanged upstreams are kept. */
  async reload(config: Config): Promise<void> {
    const old = this.#runtime
    this.#runtime = buildRuntime(config, old.pools)
    await retireRuntime(old, this.#runtime)
  }

  /**
   * Stops accepting, lets in-flight requests finish for up to `drainMs`, then closes
   * everything that is left.
   */
  async stop(drainMs = 0): Promise<void> {
    const closing = this.listeners.map((l) => new Promise<void>((resolve) => {
      l.server.close(() => resolve())
      l.server.closeIdleConnections()
    }))
    const timer = setTimeout(() => { for (const s of this.#sockets) s.destroy() }, drainMs)
    await Promise.all(closing)
    clearTimeout(timer)
    await retireRuntime(this.#runtime, null)
    await this.accessLog.flush()
  }
}

/**
 * Shapes shared by every fault-injecting lab server: the fault modes, their options and the running server.
 */

/**
 * What a lab server does to the connections and requests it receives. Each fault mode
 * reproduces one gateway failure cause deterministically on loopback.
 */
export type FaultMode =
  | 'ok'
  | 'refuse'
  | 'connect-timeout'
  | 'hang'
  | 'reset-before-header'
  | 'close-before-header'
  | 'garbage'
  | 'tls'
  | 'plain-behind-https'
  | 'big-header'
  | 'slow'
  | 'slow-body'
  | 'reset-mid-body'
  | 'idle-mid-body'
  | 'keepalive-race'
  | 'dns-invalid'

/** Options of {@link startLab}; each applies to the modes named in its comment. */
export interface LabOptions {
  /** Instance name reported by 'ok' (body `server` field and `X-Lab-Server` header), for load-balancing demos. Default `${mode}-${port}`. */
  name?: string
  /** Bind address; loopback only (127.0.0.0/8 or ::1). Default `127.0.0.1`. */
  host?: string
  /** Bind port; default 0 (the kernel picks a free one). */
  port?: number
  /** 'slow': response delay in ms, fixed or a log-normal distribution given by its p50 and p99. Default `{ p50: 50, p99: 400 }`. */
  latencyMs?: number | { p50: number; p99: number }
  /** 'big-header': size of the response header section in bytes, status line and final CRLF included. Default 65536. */
  headerBytes?: number
  /** 'keepalive-race': how long an idle connection stays open after its last response, in ms. Default 200. */
  keepAliveTimeoutMs?: number
  /** 'keepalive-race': send `Keep-Alive: timeout=<seconds, rounded down>` like a well-behaved server. Default false. */
  advertiseKeepAlive?: boolean
  /** 'slow-body': pause between body chunks in ms. Default 100. */
  chunkIntervalMs?: number
  /** Response body size in bytes (Content-Length) for 'slow-body' (default 8192), 'reset-mid-body' and 'idle-mid-body' (default 1 MiB). */
  bodyBytes?: number
}

/** A running lab server. */
export interface LabServer {
  readonly mode: FaultMode
  /** The URL that reproduces the fault, e.g. `http://127.0.0.1:43121`; an http:// URL for 'tls', an https:// URL for 'plain-behind-https'. */
  readonly url: string
  readonly host: string
  readonly port: number
  /** TCP connections accepted so far. */
  readonly connections: number
  /** Requests received so far (a request head read completely). */
  readonly requests: number
  /** Closes the listener and destroys every open socket; resolves once all are gone. Idempotent. */
  close(): Promise<void>
}

/**
 * The normalised log event every log reader yields, whatever the log format.
 */
import type { CauseType } from '../../failures/causes.ts'

/** Which kind of log a line came from. */
export type LogSource = 'portico' | 'nginx-error' | 'nginx-access'

/** One log line, normalised. */
export interface LogEvent {
  /** When it happened. nginx error.log times carry no zone and are read as local time. */
  ts: Date
  source: LogSource
  /** RFC 9209 error type of a gateway failure, or null (success, or a log that does not say why). */
  cause: CauseType | null
  /** HTTP status sent downstream, or null when the log line has none. */
  status: number | null
  /** Upstream pool name (Portico `upstream`, nginx upstream block name), or null. */
  upstream: string | null
  /** Endpoint tried last, `host:port` (or a host name that did not resolve), or null. */
  endpoint: string | null
  /** Request ID (Portico `request_id`, nginx `$request_id`), or null. */
  requestId: string | null
  /** 1-based line number in the file. */
  line: number
  /** The line as read. */
  raw: string
  /** Short machine detail of the failure (e.g. `refused`, `closed_mid_body`), when known. */
  detail?: string | null
  /** Client address, when logged. */
  client?: string | null
  /** Request line (`GET /x HTTP/1.1`), when logged. */
  request?: string | null
  /** nginx `server:` (server_name of the server block), when logged. */
  server?: string | null
  /** Request `Host`, when logged. */
  host?: string | null
  /** Log level (nginx error.log: `error`, `crit`, `alert`, ...), when logged. */
  level?: string
  /** The message without its context (nginx error.log), when logged. */
  message?: string
  /** What the proxy spoke to the upstream, from the scheme of nginx's `upstream:` field (`http`, `fastcgi`, `uwsgi`, `scgi`, `grpc`), when logged. */
  protocol?: string
}

/** Whether the status is one a gateway answers with when the upstream failed (502, 503, 504). */
export function isGatewayStatus(status: number | null): boolean {
  return status === 502 || status === 503 || status === 504
}

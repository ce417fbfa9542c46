/**
 * The access log: one line per request, written once when the request ends, rendered
 * from the request context alone (DESIGN.md §4). JSON lines by default, text for humans.
 */
import pino from 'pino'
import type { RequestContext } from '../proxy/context.ts'

/** One access log record, the contract other tools (doctor, log shippers) read. */
export interface AccessLogRecord {
  ts: string
  request_id: string
  client_ip: string
  method: string
  host: string
  path: string
  protocol: string
  status: number
  bytes_sent: number
  duration_ms: number
  route: string | null
  upstream: string | null
  endpoint: string | null
  upstream_status: number | null
  attempts: number
  connection_reused: boolean
  timings: { dns_ms: number | null; connect_ms: number | null; tls_ms: number | null; ttfb_ms: number | null }
  error: string | null
  details: string | null
  cache: string | null
  /** `client_closed` when the client went away (status 499), `aborted` when Portico aborted a failed response mid-body; absent otherwise. */
  downstream?: string
}

/** Rounds to 0.01 ms: enough for loopback timings, short in the log. */
function ms(v: number | null): number | null {
  return v === null ? null : Math.round(v * 100) / 100
}

/** Renders the record of a finished request. */
export function toRecord(ctx: RequestContext): AccessLogRecord {
  const r: AccessLogRecord = {
    ts: new Date(ctx.startedAt).toISOString(),
    request_id: ctx.requestId,
    client_ip: ctx.clientIp,
    method: ctx.method,
    host: ctx.host,
    path: ctx.path,
    protocol: ctx.protocol,
    status: ctx.status,
    bytes_sent: ctx.bytesSent,
    duration_ms: ms(performance.now() - ctx.start) as number,
    route: ctx.route,
    upstream: ctx.upstream,
    endpoint: ctx.endpoint,
    upstream_status: ctx.upstreamStatus,
    attempts: ctx.attempts,
    connection_reused: ctx.connectionReused,
    timings: {
      dns_ms: ms(ctx.timings.dns_ms),
      connect_ms: ms(ctx.timings.connect_ms),
      tls_ms: ms(ctx.timings.tls_ms),
      ttfb_ms: ms(ctx.timings.ttfb_ms),
    },
    error: ctx.error,
    details: ctx.details,
    cache: ctx.cache,
  }
  if (ctx.downstream !== 'completed') r.downstream = ctx.downstream
  return r
}

/** Renders a record as one human-readable line (the `text` format). */
export function formatText(r: AccessLogRecord): string {
  const t = r.timings
  const parts = [
    r.ts, r.client_ip, `"${r.method} ${r.host}${r.path} ${r.protocol}"`, String(r.status), String(r.bytes_sent),
    `${r.duration_ms}ms`, `route=${r.route ?? '-'}`, `upstream=${r.upstream ?? '-'}`, `endpoint=${r.endpoint ?? '-'}`,
    `upstream_status=${r.upstream_status ?? '-'}`, `attempts=${r.attempts}`, `reused=${r.connection_reused}`,
    `ttfb=${t.ttfb_ms ?? '-'}ms`, `error=${r.error ?? '-'}`,
  ]
  if (r.cache) parts.push(`cache="${r.cache}"`)
  if (r.downstream) parts.push(`downstream=${r.downstream}`)
  if (r.details) parts.push(`details="${r.details.replace(/"/g, "'")}"`)
  parts.push(`id=${r.request_id}`)
  return parts.join(' ')
}

/** Where access log lines go. */
export interface AccessLogSink {
  /** Writes the line of a finished request; called exactly once per request. */
  write(ctx: RequestContext): void
  /** Optional observer of every record (metrics, the recent-failure ring, tests). */
  onRecord?: (r: AccessLogRecord) => void
  /** Flushes buffered lines. */
  flush(): Promise<void>
}

/** Most time a line waits before it is written, in ms (nginx `access_log ... flush=`). */
export const ACCESS_LOG_FLUSH_MS = 100
/** Pending bytes that trigger a write at once (nginx `access_log ... buffer=`). */
const ACCESS_LOG_BUFFER_CHARS = 64 * 1024

/**
 * Creates the access log writer: pino's asynchronous destination (sonic-boom) so the hot
 * path never blocks on the disk, for both formats. Lines are written in batches, as
 * nginx's `access_log ... buffer=64k flush=100ms` does: one write per 64 KiB or per
 * {@link ACCESS_LOG_FLUSH_MS}, whichever comes first, instead of one per request;
 * {@link AccessLogSink.flush} (run when Portico stops) writes what is pending at once.
 *
 * @param format `json` or `text`
 * @param path a file path to append to, or `-` for standard output
 */
export function createAccessLog(format: 'json' | 'text', path: string): AccessLogSink {
  const dest = pino.destination({ dest: path === '-' ? 1 : path, sync: false, mkdir: true })
  let pending = ''
  let timer: NodeJS.Timeout | null = null
  const writePending = (): void => {
    if (timer !== null) {
      clearTimeout(timer)
      timer = null
    }
    if (pending === '') return
    const lines = pending
    pending = ''
    dest.write(lines)
  }
  const sink: AccessLogSink = {
    write(ctx) {
      const r = toRecord(ctx)
      sink.onRecord?.(r)
      pending += (format === 'json' ? JSON.stringify(r) : formatText(r)) + '\n'
      if (pending.length >= ACCESS_LOG_BUFFER_CHARS) writePending()
      else timer ??= setTimeout(writePending, ACCESS_LOG_FLUSH_MS).unref()
    },
    flush() {
      writePending()
      return new Promise<void>((resolve) => {
        try {
          dest.flush((_err?: Error) => resolve())
        } catch {
          resolve()
        }
      })
    },
  }
  return sink
}

/** An access log kept in memory, for tests and embedding. */
export function memoryAccessLog(): AccessLogSink & { records: AccessLogRecord[] } {
  const records: AccessLogRecord[] = []
  const sink = {
    records,
    write(ctx: RequestContext) {
      const r = toRecord(ctx)
      sink.onRecord?.(r)
      records.push(r)
    },
    onRecord: undefined as ((r: AccessLogRecord) => void) | undefined,
    flush: async () => {},
  }
  return sink
}

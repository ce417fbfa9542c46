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

/** Time from the request's accept to now, in ms rounded to 0.01: the `duration_ms` of its record. */
export function durationOf(ctx: RequestContext): number {
  return Math.round((performance.now() - ctx.start) * 100) / 100
}

/**
 * Renders the record of a finished request.
 *
 * @param durationMs the request's `duration_ms`; default {@link durationOf} now
 */
export function toRecord(ctx: RequestContext, durationMs: number = durationOf(ctx)): AccessLogRecord {
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
    duration_ms: durationMs,
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

/** Characters a JSON string must escape (RFC 8259 §7), and lone surrogates, which JSON.stringify escapes. */
const JSON_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/

/** A JSON string literal of `s`: quoted as is when nothing needs escaping, else by JSON.stringify. */
function jsonString(s: string): string {
  return JSON_ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`
}

function jsonStringOrNull(s: string | null): string {
  return s === null ? 'null' : jsonString(s)
}

/**
 * Renders the JSON line of a finished request straight from its context: the same text as
 * `JSON.stringify(toRecord(ctx, durationMs))`, without building the record (this runs once
 * per request).
 */
export function renderJson(ctx: RequestContext, durationMs: number): string {
  const t = ctx.timings
  const tail = ctx.downstream === 'completed' ? '}' : `,"downstream":"${ctx.downstream}"}`
  return `{"ts":"${new Date(ctx.startedAt).toISOString()}","request_id":${jsonString(ctx.requestId)},"client_ip":${jsonString(ctx.clientIp)},` +
    `"method":${jsonString(ctx.method)},"host":${jsonString(ctx.host)},"path":${jsonString(ctx.path)},"protocol":${jsonString(ctx.protocol)},` +
    `"status":${ctx.status},"bytes_sent":${ctx.bytesSent},"duration_ms":${durationMs},"route":${jsonStringOrNull(ctx.route)},` +
    `"upstream":${jsonStringOrNull(ctx.upstream)},"endpoint":${jsonStringOrNull(ctx.endpoint)},"upstream_status":${ctx.upstreamStatus},` +
    `"attempts":${ctx.attempts},"connection_reused":${ctx.connectionReused},"timings":{"dns_ms":${ms(t.dns_ms)},"connect_ms":${ms(t.connect_ms)},` +
    `"tls_ms":${ms(t.tls_ms)},"ttfb_ms":${ms(t.ttfb_ms)}},"error":${jsonStringOrNull(ctx.error)},"details":${jsonStringOrNull(ctx.details)},` +
    `"cache":${jsonStringOrNull(ctx.cache)}${tail}`
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
  /**
   * Optional observer of every finished request (metrics, the recent-failure ring), called
   * with its context and the `duration_ms` its line carries.
   */
  observe?: (ctx: RequestContext, durationMs: number) => void
  /** Flushes buffered lines. */
  flush(): Promise<void>
}

/** Most time a line waits before it is written, in ms (nginx `access_log ... flush=`). */
export const ACCESS_LOG_FLUSH_MS = 100
/** Size of the line buffer, in bytes: a full one is written at once (nginx `access_log ... buffer=`). */
const ACCESS_LOG_BUFFER_BYTES = 64 * 1024

/**
 * Creates the access log writer: pino's asynchronous destination (sonic-boom) so the hot
 * path never blocks on the disk, for both formats. Lines are written in batches, as
 * nginx's `access_log ... buffer=64k flush=100ms` does: one write per 64 KiB or per
 * {@link ACCESS_LOG_FLUSH_MS}, whichever comes first, instead of one per request;
 * {@link AccessLogSink.flush} (run when Portico stops) writes what is pending at once.
 *
 * Lines are encoded into a byte buffer as they are rendered, so a line's string dies young
 * instead of waiting in memory for the batch (which would move it to the old generation
 * and make every request cost a share of a full garbage collection).
 *
 * @param format `json` or `text`
 * @param path a file path to append to, or `-` for standard output
 */
export function createAccessLog(format: 'json' | 'text', path: string): AccessLogSink {
  // minLength 1: every batch is written at once (as with 0), and flush(cb) waits for the
  // bytes to be written (with 0, sonic-boom calls cb at once).
  const dest = pino.destination({ dest: path === '-' ? 1 : path, sync: false, mkdir: true, contentMode: 'buffer', minLength: 1 })
  // In `buffer` content mode sonic-boom takes Buffers; its types only know strings.
  const out = dest as unknown as { write(chunk: Buffer): boolean }
  let buf = Buffer.allocUnsafe(ACCESS_LOG_BUFFER_BYTES)
  let used = 0
  let timer: NodeJS.Timeout | null = null
  const writePending = (): void => {
    if (timer !== null) {
      clearTimeout(timer)
      timer = null
    }
    if (used === 0) return
    // The destination keeps the bytes until written: hand them over and start a new buffer.
    out.write(buf.subarray(0, used))
    buf = Buffer.allocUnsafe(ACCESS_LOG_BUFFER_BYTES)
    used = 0
  }
  const sink: AccessLogSink = {
    write(ctx) {
      const d = durationOf(ctx)
      sink.observe?.(ctx, d)
      const line = format === 'json' ? renderJson(ctx, d) : formatText(toRecord(ctx, d))
      // UTF-8 takes at most 3 bytes per UTF-16 code unit.
      const most = line.length * 3 + 1
      if (used + most > buf.length) {
        writePending()
        if (most > buf.length) {
          out.write(Buffer.from(line + '\n'))
          return
        }
      }
      used += buf.write(line, used, 'utf8')
      buf[used++] = 10
      timer ??= setTimeout(writePending, ACCESS_LOG_FLUSH_MS).unref()
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
      const d = durationOf(ctx)
      sink.observe?.(ctx, d)
      records.push(toRecord(ctx, d))
    },
    observe: undefined as ((ctx: RequestContext, durationMs: number) => void) | undefined,
    flush: async () => {},
  }
  return sink
}

/**
 * The access log: one line per request, written once when the request ends, rendered
 * from the request context alone (DESIGN.md §4). JSON lines by default, text for humans.
 */
import pino from 'pino'
import type { RequestContext } from './context.ts'

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
  /** The worker process that served the request (1 to N), when Portico runs workers; absent in a single process. */
  worker?: number
}

/** Rounds to 0.01 ms: enough for loopback timings, short in the log. */
function round(v: number): number {
  return Math.round(v * 100) / 100
}

function ms(v: number | null): number | null {
  return v === null ? null : round(v)
}

/** Time from the request's accept to now, in ms rounded to 0.01: the `duration_ms` of its record. */
export function durationOf(ctx: RequestContext): number {
  return round(performance.now() - ctx.start)
}

/**
 * Renders the record of a finished request.
 *
 * @param durationMs the request's `duration_ms`; default {@link durationOf} now
 */
export function toRecord(ctx: RequestContext, durationMs: number = durationOf(ctx)): AccessLogRecord {
  const r = fillRecord(emptyRecord(), ctx, durationMs)
  // `downstream` is absent, not undefined, when the response completed.
  if (r.downstream === undefined) delete r.downstream
  return r
}

let lastMs = -1
let lastIso = ''

/** `new Date(ms).toISOString()`, remembered for the last millisecond asked (many requests share one). */
function isoTime(ms: number): string {
  if (ms !== lastMs) {
    lastIso = new Date(ms).toISOString()
    lastMs = ms
  }
  return lastIso
}

/**
 * Fills `r`, a record reused from request to request, with the fields of a finished
 * request, so that `JSON.stringify(r)` is the request's JSON line (the same text as
 * `JSON.stringify(toRecord(ctx, durationMs))`: an undefined `downstream` is left out).
 * Only the file sink uses it, synchronously, once per request.
 */
function fillRecord(r: AccessLogRecord, ctx: RequestContext, durationMs: number): AccessLogRecord {
  r.ts = isoTime(ctx.startedAt)
  r.request_id = ctx.requestId
  r.client_ip = ctx.clientIp
  r.method = ctx.method
  r.host = ctx.host
  r.path = ctx.path
  r.protocol = ctx.protocol
  r.status = ctx.status
  r.bytes_sent = ctx.bytesSent
  r.duration_ms = durationMs
  r.route = ctx.route
  r.upstream = ctx.upstream
  r.endpoint = ctx.endpoint
  r.upstream_status = ctx.upstreamStatus
  r.attempts = ctx.attempts
  r.connection_reused = ctx.connectionReused
  const t = r.timings
  t.dns_ms = ms(ctx.timings.dns_ms)
  t.connect_ms = ms(ctx.timings.connect_ms)
  t.tls_ms = ms(ctx.timings.tls_ms)
  t.ttfb_ms = ms(ctx.timings.ttfb_ms)
  r.error = ctx.error
  r.details = ctx.details
  r.cache = ctx.cache
  r.downstream = ctx.downstream === 'completed' ? undefined : ctx.downstream
  return r
}

function emptyRecord(): AccessLogRecord {
  return {
    ts: '', request_id: '', client_ip: '', method: '', host: '', path: '', protocol: '', status: 0, bytes_sent: 0,
    duration_ms: 0, route: null, upstream: null, endpoint: null, upstream_status: null, attempts: 0, connection_reused: false,
    timings: { dns_ms: null, connect_ms: null, tls_ms: null, ttfb_ms: null }, error: null, details: null, cache: null,
  }
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

/** Options of {@link createAccessLog}. */
export interface AccessLogOptions {
  /**
   * Largest write, in bytes (default 64 KiB). Several processes writing to one pipe (the
   * workers of a cluster on a shared standard output) use 4096, POSIX `PIPE_BUF`: a write
   * that large or smaller is never interleaved with another, so lines stay whole; a line
   * longer than that has its path, details and host shortened ({@link fitLine}). A file is
   * opened with O_APPEND, where each write lands whole whatever its size.
   */
  bufferBytes?: number
  /** The worker number lines carry (`worker` in JSON, `worker=N` at the end of a text line); none by default (a single process). */
  worker?: number
}

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
export function createAccessLog(format: 'json' | 'text', path: string, opts: AccessLogOptions = {}): AccessLogSink {
  const size = opts.bufferBytes ?? ACCESS_LOG_BUFFER_BYTES
  // minLength 1: every batch is written at once (as with 0), and flush(cb) waits for the
  // bytes to be written (with 0, sonic-boom calls cb at once). maxWrite: batches are never
  // joined into a write larger than one buffer.
  const dest = pino.destination({ dest: path === '-' ? 1 : path, sync: false, mkdir: true, contentMode: 'buffer', minLength: 1, ...(opts.bufferBytes !== undefined ? { maxWrite: size } : {}) })
  // In `buffer` content mode sonic-boom takes Buffers; its types only know strings.
  const out = dest as unknown as { write(chunk: Buffer): boolean }
  let buf = Buffer.allocUnsafe(size)
  let used = 0
  let timer: NodeJS.Timeout | null = null
  const record = emptyRecord()
  if (opts.worker !== undefined) record.worker = opts.worker
  const textSuffix = opts.worker !== undefined ? ` worker=${opts.worker}` : ''
  const writePending = (): void => {
    if (timer !== null) {
      clearTimeout(timer)
      timer = null
    }
    if (used === 0) return
    // The destination keeps the bytes until written: hand them over and start a new buffer.
    out.write(buf.subarray(0, used))
    buf = Buffer.allocUnsafe(size)
    used = 0
  }
  const sink: AccessLogSink = {
    write(ctx) {
      const d = durationOf(ctx)
      sink.observe?.(ctx, d)
      let line = format === 'json' ? JSON.stringify(fillRecord(record, ctx, d)) : formatText(toRecord(ctx, d)) + textSuffix
      // UTF-8 takes at most 3 bytes per UTF-16 code unit.
      let most = line.length * 3 + 1
      if (used + most > buf.length) {
        writePending()
        if (most > buf.length) {
          // Writes are bounded (a pipe shared by workers): a longer line would be cut into
          // several writes that another process's can fall between. It is shortened instead.
          if (opts.bufferBytes !== undefined) {
            line = fitLine(format === 'json' ? fillRecord(record, ctx, d) : toRecord(ctx, d), format, textSuffix, size - 1)
            most = Buffer.byteLength(line) + 1
          }
          if (most > buf.length) {
            out.write(Buffer.from(line + '\n'))
            return
          }
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

/** Marks a field of an access log line that was shortened to keep the line within one write. */
const CUT = '…[cut]'
const CUT_BYTES = Buffer.byteLength(CUT)

/**
 * Renders `r` in at most `maxBytes` bytes of UTF-8: the free-text fields (`path`, then
 * `details`, then `host`) are shortened, each keeping its start (512 UTF-16 units, fewer
 * only when that is not enough) and ending in `…[cut]`; every other field stays whole.
 */
export function fitLine(r: AccessLogRecord, format: 'json' | 'text', textSuffix: string, maxBytes: number): string {
  const render = () => (format === 'json' ? JSON.stringify(r) : formatText(r) + textSuffix)
  let line = render()
  // First down to a useful start of each (512 units), then further only if still needed.
  for (const floor of [512, 0]) {
    for (const field of ['path', 'details', 'host'] as const) {
      const over = Buffer.byteLength(line) - maxBytes
      if (over <= 0) return line
      const value = r[field]
      if (typeof value !== 'string' || value.length <= floor || value.endsWith(CUT) && value.length <= floor + CUT.length) continue
      // Cut by UTF-16 units: each is at least one byte, so `over` more units than the mark's bytes are enough.
      const keep = Math.max(floor, value.length - over - CUT_BYTES)
      r[field] = value.slice(0, keep) + CUT
      line = render()
    }
  }
  return line
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

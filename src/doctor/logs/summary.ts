/**
 * Reads a log file line by line (streamed, never whole) and summarises its gateway
 * errors: by cause, endpoint and minute, bursts, first/last seen and sample lines.
 */
import { createReadStream } from 'node:fs'
import { createInterface } from 'node:readline'
import { Readable } from 'node:stream'
import type { CauseType } from '../../failures/causes.ts'
import type { LogEvent } from './event.ts'
import { isGatewayStatus } from './event.ts'
import { detectFormat, lineReader } from './detect.ts'
import type { LogFormatName } from './detect.ts'

/** Key of a failure group: its cause, or `unclassified` for a 502/503/504 the log does not explain. */
export type CauseKey = CauseType | 'unclassified'

/** A log line kept as evidence. */
export interface SampleLine {
  /** 1-based line number. */
  line: number
  raw: string
}

/** Failures of one cause. */
export interface CauseSummary {
  cause: CauseKey
  count: number
  /** Counts by endpoint (`host:port`; `-` when the line names none). */
  byEndpoint: Record<string, number>
  /** Counts by upstream pool name (`-` when none). */
  byUpstream: Record<string, number>
  /** Counts by status sent downstream (`-` when none). */
  byStatus: Record<string, number>
  /** Counts by machine detail (e.g. `ephemeral_ports_exhausted`); `-` when none. */
  byDetail: Record<string, number>
  /** Counts by upstream protocol (`http`, `fastcgi`, `uwsgi`, `scgi`, `grpc`; `-` when the line does not say). */
  byProtocol: Record<string, number>
  firstSeen: Date
  lastSeen: Date
  /** Minute with most failures of this cause, `YYYY-MM-DDTHH:MM` (UTC). */
  peakMinute: string
  peakCount: number
  /** Up to 3 lines, first seen first. */
  samples: SampleLine[]
}

/** A minute with far more gateway errors than usual. */
export interface Burst {
  /** `YYYY-MM-DDTHH:MM` (UTC). */
  minute: string
  count: number
  /** Median gateway errors per minute over the log's time span, zero minutes included. */
  median: number
}

/** A failed request, for correlation with a backend log. */
export interface FailedRequest {
  requestId: string
  cause: CauseKey
  line: number
}

/** What a log says about gateway errors. */
export interface LogSummary {
  path: string
  format: LogFormatName
  /** The `since` filter applied, or null. */
  since: Date | null
  /** Lines read. */
  lines: number
  /** Non-blank lines the reader did not understand. */
  unparsed: number
  /** Events at or after `since`. */
  events: number
  /** Gateway errors: events with a cause, or a 502/503/504 in an access log that names no cause. */
  failures: number
  /** Failures by cause. */
  byCause: Partial<Record<CauseKey, number>>
  /** Failures by endpoint (`-` when unknown). */
  byEndpoint: Record<string, number>
  /** Failures by minute, `YYYY-MM-DDTHH:MM` (UTC), in time order. */
  byMinute: Record<string, number>
  /** Minutes with at least 5× the median per-minute failures (and at least 5), in time order. */
  bursts: Burst[]
  /** One entry per cause, most frequent first. */
  causes: CauseSummary[]
  /** First and last failure. */
  firstSeen: Date | null
  lastSeen: Date | null
  /** First and last event of any kind (the time span the log covers). */
  firstEvent: Date | null
  lastEvent: Date | null
  /** Failed requests with a request ID, up to {@link MAX_FAILED_REQUESTS}. */
  failedRequests: FailedRequest[]
  /** Failures that carried no request ID. */
  failuresWithoutId: number
}

/** Options of {@link readLog}. */
export interface ReadLogOptions {
  /** Ignore events before this time. */
  since?: Date
  /** Skip detection and read the log in this format. */
  format?: LogFormatName
  /** nginx `log_format` string of an access log (from the nginx model), when known. */
  logFormat?: string
  /** Read only the first this many bytes (the size when the run started: lines written later, e.g. by doctor's own requests, are not counted). */
  endByte?: number
}

/** Most failed request IDs kept for correlation. */
export const MAX_FAILED_REQUESTS = 10_000
/** Lines read before detecting the format. */
const DETECT_LINES = 50
const SAMPLES_PER_CAUSE = 3
/** A burst is a minute with at least this many times the median per-minute rate. */
const BURST_FACTOR = 5
/** …and at least this many failures, so a quiet log's single errors are not bursts. */
const BURST_MIN = 5

/** `YYYY-MM-DDTHH:MM` of a time, in UTC. */
export function minuteOf(ts: Date): string {
  return ts.toISOString().slice(0, 16)
}

/**
 * Whether an event is a gateway error: it has a cause; or it comes from an nginx access
 * log (which never names one) with status 502/503/504. A Portico line with status 502
 * and no error is the application's own 502, relayed, and is not counted.
 */
export function isFailure(e: LogEvent): boolean {
  if (e.cause !== null) return e.cause !== 'destination_not_found' && e.cause !== 'http_request_denied'
  return e.source === 'nginx-access' && isGatewayStatus(e.status)
}

function bump(rec: Record<string, number>, key: string): void {
  rec[key] = (rec[key] ?? 0) + 1
}

/** Median of per-minute counts over `span` minutes, of which only `counts` are non-zero. */
function medianPerMinute(counts: number[], span: number): number {
  const sorted = [...counts].sort((a, b) => a - b)
  const zeros = span - sorted.length
  const at = (i: number): number => (i < zeros ? 0 : sorted[i - zeros])
  return span % 2 === 1 ? at((span - 1) / 2) : (at(span / 2 - 1) + at(span / 2)) / 2
}

/**
 * Minutes with at least 5× the median per-minute gateway errors (and at least 5).
 * The median runs over every minute between the first and last event, zero minutes
 * included; with fewer than 3 minutes there is no baseline and no burst.
 */
export function findBursts(byMinute: Record<string, number>, firstEvent: Date | null, lastEvent: Date | null): Burst[] {
  if (!firstEvent || !lastEvent) return []
  const span = Math.floor(lastEvent.getTime() / 60_000) - Math.floor(firstEvent.getTime() / 60_000) + 1
  if (span < 3) return []
  const counts = Object.values(byMinute)
  const median = medianPerMinute(counts, Math.max(span, counts.length))
  const threshold = Math.max(BURST_FACTOR * median, BURST_MIN)
  return Object.entries(byMinute).filter(([, n]) => n >= threshold).map(([minute, count]) => ({ minute, count, median }))
}

interface CauseAcc extends Omit<CauseSummary, 'peakMinute' | 'peakCount'> {
  minutes: Record<string, number>
}

/** Accumulates events into a summary; exported for readers that are not files. */
export class LogSummarizer {
  #events = 0
  #failures = 0
  #byEndpoint: Record<string, number> = {}
  #byMinute: Record<string, number> = {}
  #causes = new Map<CauseKey, CauseAcc>()
  #first: Date | null = null
  #last: Date | null = null
  #firstFail: Date | null = null
  #lastFail: Date | null = null
  #failed: FailedRequest[] = []
  #withoutId = 0

  /** Adds one event (already filtered by `since`). */
  add(e: LogEvent): void {
    this.#events++
    if (!this.#first || e.ts < this.#first) this.#first = e.ts
    if (!this.#last || e.ts > this.#last) this.#last = e.ts
    if (!isFailure(e)) return
    this.#failures++
    if (!this.#firstFail || e.ts < this.#firstFail) this.#firstFail = e.ts
    if (!this.#lastFail || e.ts > this.#lastFail) this.#lastFail = e.ts
    const key: CauseKey = e.cause ?? 'unclassified'
    const endpoint = e.endpoint ?? '-'
    const minute = minuteOf(e.ts)
    bump(this.#byEndpoint, endpoint)
    bump(this.#byMinute, minute)
    let c = this.#causes.get(key)
    if (!c) {
      c = { cause: key, count: 0, byEndpoint: {}, byUpstream: {}, byStatus: {}, byDetail: {}, byProtocol: {}, firstSeen: e.ts, lastSeen: e.ts, samples: [], minutes: {} }
      this.#causes.set(key, c)
    }
    c.count++
    bump(c.byEndpoint, endpoint)
    bump(c.byUpstream, e.upstream ?? '-')
    bump(c.byStatus, e.status === null ? '-' : String(e.status))
    bump(c.byDetail, e.detail && e.source === 'nginx-error' ? e.detail : '-')
    bump(c.byProtocol, e.protocol ?? '-')
    bump(c.minutes, minute)
    if (e.ts < c.firstSeen) c.firstSeen = e.ts
    if (e.ts > c.lastSeen) c.lastSeen = e.ts
    if (c.samples.length < SAMPLES_PER_CAUSE) c.samples.push({ line: e.line, raw: e.raw })
    if (e.requestId === null) this.#withoutId++
    else if (this.#failed.length < MAX_FAILED_REQUESTS) this.#failed.push({ requestId: e.requestId, cause: key, line: e.line })
  }

  /** The summary so far. */
  result(path: string, format: LogFormatName, since: Date | null, lines: number, unparsed: number): LogSummary {
    const causes: CauseSummary[] = [...this.#causes.values()].map(({ minutes, ...c }) => {
      const [peakMinute, peakCount] = Object.entries(minutes).reduce((a, b) => (b[1] > a[1] ? b : a))
      return { ...c, peakMinute, peakCount }
    }).sort((a, b) => b.count - a.count)
    const byMinute = Object.fromEntries(Object.entries(this.#byMinute).sort(([a], [b]) => a.localeCompare(b)))
    return {
      path, format, since, lines, unparsed, events: this.#events, failures: this.#failures,
      byCause: Object.fromEntries(causes.map((c) => [c.cause, c.count])),
      byEndpoint: this.#byEndpoint, byMinute,
      bursts: findBursts(byMinute, this.#first, this.#last),
      causes, firstSeen: this.#firstFail, lastSeen: this.#lastFail, firstEvent: this.#first, lastEvent: this.#last,
      failedRequests: this.#failed, failuresWithoutId: this.#withoutId,
    }
  }
}

/**
 * Reads a log file line by line (streamed: memory stays flat however large the log),
 * detects its format from the first 50 lines (Portico JSON or text access log, nginx
 * error.log, nginx access.log) and summarises its gateway errors.
 *
 * @param path the log file
 * @param opts.since ignore events before this time
 * @param opts.format skip detection
 * @param opts.logFormat nginx `log_format` string of an access log, when known
 * @throws the file system error (e.g. `ENOENT`, `EACCES`) when the file cannot be read
 */
export async function readLog(path: string, opts: ReadLogOptions = {}): Promise<LogSummary> {
  const since = opts.since ?? null
  const input = opts.endByte === 0 ? Readable.from([]) : createReadStream(path, { encoding: 'utf8', ...(opts.endByte !== undefined ? { end: opts.endByte - 1 } : {}) })
  const rl = createInterface({ input, crlfDelay: Infinity })
  const acc = new LogSummarizer()
  const head: string[] = []
  let read: ((raw: string, line: number) => LogEvent | null) | null = null
  let format: LogFormatName = opts.format ?? 'unknown'
  let lines = 0
  let unparsed = 0
  const consume = (raw: string, n: number): void => {
    if (raw.trim() === '' || !read) return
    const e = read(raw, n)
    if (!e) { unparsed++; return }
    if (since && e.ts < since) return
    acc.add(e)
  }
  const start = (): void => {
    if (!opts.format) format = detectFormat(head, opts.logFormat)
    read = lineReader(format, opts.logFormat)
    // A given log_format that does not fit falls back to the common layouts.
    if (format === 'nginx-access' && opts.logFormat && !head.some((l, i) => read?.(l, i + 1))) read = lineReader(format)
    head.forEach((raw, i) => consume(raw, i + 1))
  }
  try {
    for await (const raw of rl) {
      lines++
      if (read) { consume(raw, lines); continue }
      head.push(raw)
      if (head.length >= DETECT_LINES) start()
    }
    if (!read) start()
  } finally {
    rl.close()
    input.destroy()
  }
  return acc.result(path, format, since, lines, unparsed)
}

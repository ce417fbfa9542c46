/**
 * Correlation of failed requests with a backend log (`--backend-log`): did the backend
 * see the request and fail, or did it never arrive?
 */
import { createReadStream } from 'node:fs'
import { createInterface } from 'node:readline'
import type { CauseKey, LogSummary } from './summary.ts'

/** What the backend log says about the failed requests of a summary. */
export interface Correlation {
  backendLog: string
  /** Failed request IDs looked for. */
  checked: number
  /** IDs found in the backend log: the backend received the request (and failed or was slow). */
  seen: string[]
  /** IDs not found: the request never reached the backend (or the backend does not log the ID). */
  notSeen: string[]
  /** The same split per cause. */
  byCause: Partial<Record<CauseKey, { seen: number; notSeen: number }>>
  /** Failures with no request ID, which cannot be correlated. */
  withoutId: number
  /** Lines of the backend log read (reading stops once every ID is found). */
  lines: number
}

/**
 * Looks for the request IDs of the failed requests in a backend log, streamed line by
 * line. A line matches an ID when the ID appears as a whole token (IDs are compared on
 * runs of letters, digits, `-` and `_`), so the backend log may be in any format that
 * writes the `X-Request-Id` it received.
 *
 * @param summary from readLog; uses `failedRequests` and `failuresWithoutId`
 * @param backendLogPath the backend's log file
 * @throws the file system error when the backend log cannot be read
 */
export async function correlate(summary: LogSummary, backendLogPath: string): Promise<Correlation> {
  const wanted = new Set(summary.failedRequests.map((f) => f.requestId))
  const found = new Set<string>()
  let lines = 0
  const input = createReadStream(backendLogPath, { encoding: 'utf8' })
  const rl = createInterface({ input, crlfDelay: Infinity })
  try {
    for await (const raw of rl) {
      lines++
      if (found.size === wanted.size) break
      for (const token of raw.split(/[^A-Za-z0-9_-]+/)) if (token && wanted.has(token)) found.add(token)
    }
  } finally {
    rl.close()
    input.destroy()
  }
  const byCause: Correlation['byCause'] = {}
  const seen: string[] = []
  const notSeen: string[] = []
  for (const f of summary.failedRequests) {
    const c = (byCause[f.cause] ??= { seen: 0, notSeen: 0 })
    if (found.has(f.requestId)) { c.seen++; seen.push(f.requestId) } else { c.notSeen++; notSeen.push(f.requestId) }
  }
  return { backendLog: backendLogPath, checked: summary.failedRequests.length, seen, notSeen, byCause, withoutId: summary.failuresWithoutId, lines }
}

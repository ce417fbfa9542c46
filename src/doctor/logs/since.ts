/**
 * The `--since` option of `portico doctor`: a duration back from now, or a date.
 */

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/**
 * Parses `--since`: a duration back from now (`90s`, `15m`, `2h`, `1d`) or an ISO 8601
 * date or date-time (`2026-11-20`, `2026-11-20T10:00:00Z`), read by JavaScript's Date:
 * a date alone is midnight UTC, a date-time without a zone is local time.
 *
 * @param text the option value
 * @param now the reference time for durations; defaults to the current time
 * @returns the earliest time of interest
 * @throws {RangeError} when the text is neither, with the accepted forms in the message
 */
export function parseSince(text: string, now: Date = new Date()): Date {
  const t = text.trim()
  const m = /^(\d+(?:\.\d+)?)\s*(s|m|h|d)$/.exec(t)
  if (m) return new Date(now.getTime() - Number(m[1]) * UNITS[m[2]])
  if (/^\d{4}-\d{2}-\d{2}/.test(t)) {
    const d = new Date(t)
    if (!Number.isNaN(d.getTime())) return d
  }
  throw new RangeError(`invalid --since "${text}": expected a duration such as "15m", "2h", "1d" or an ISO date such as "2026-11-20T10:00:00Z"`)
}

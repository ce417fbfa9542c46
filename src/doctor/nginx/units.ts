/**
 * nginx time and size syntax (`30s`, `1h 30m`, `500ms`, `8k`, `1m`), as documented in
 * "Configuration file measurement units" (nginx.org/en/docs/syntax.html).
 */

const TIME_UNITS: Record<string, number> = {
  ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000, M: 2_592_000_000, y: 31_536_000_000,
}

/**
 * Parses an nginx time: one or more number+unit parts, largest unit first
 * (`1h 30m`, `1h30m`), units ms s m h d w M y; a bare number means seconds.
 *
 * @returns milliseconds
 * @throws {RangeError} when the text is not nginx time syntax
 */
export function parseNginxTime(text: string): number {
  const t = text.trim()
  if (/^\d+$/.test(t)) return Number(t) * 1000
  const re = /(\d+)(ms|s|m|h|d|w|M|y)\s*/gy
  let total = 0
  let m: RegExpExecArray | null
  let end = 0
  while ((m = re.exec(t)) !== null) {
    total += Number(m[1]) * TIME_UNITS[m[2]]
    end = re.lastIndex
  }
  if (end !== t.length || t.length === 0) throw new RangeError(`invalid nginx time "${text}": expected e.g. "30s", "500ms", "1m", "1h 30m" or a number of seconds`)
  return total
}

/**
 * Parses an nginx size: a number of bytes with an optional `k`/`K` (×1024), `m`/`M`
 * (×1024²) or `g`/`G` (×1024³).
 *
 * @returns bytes
 * @throws {RangeError} when the text is not nginx size syntax
 */
export function parseNginxSize(text: string): number {
  const m = /^(\d+)([kKmMgG]?)$/.exec(text.trim())
  if (!m) throw new RangeError(`invalid nginx size "${text}": expected e.g. "4k", "8k", "1m" or a number of bytes`)
  const unit = m[2].toLowerCase()
  return Number(m[1]) * (unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1)
}

/** Formats milliseconds in nginx time syntax, for fix texts (`60000` → `60s`). */
export function formatNginxTime(ms: number): string {
  if (ms !== 0 && ms % 60_000 === 0) return `${ms / 60_000}m`
  if (ms % 1000 === 0) return `${ms / 1000}s`
  return `${ms}ms`
}

/** Formats bytes in nginx size syntax (`8192` → `8k`). */
export function formatNginxSize(bytes: number): string {
  if (bytes !== 0 && bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)}m`
  if (bytes !== 0 && bytes % 1024 === 0) return `${bytes / 1024}k`
  return `${bytes}`
}

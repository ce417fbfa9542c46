/**
 * Durations and sizes as written in portico.yaml: strings with units.
 */

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/

/**
 * Parses a duration such as `"250ms"`, `"5s"`, `"1.5m"`, `"1h"`.
 *
 * @returns the duration in milliseconds (rounded to a whole number)
 * @throws {RangeError} when the text is not a number followed by ms, s, m or h
 */
export function parseDuration(text: string): number {
  const m = DURATION_RE.exec(text.trim())
  if (!m) throw new RangeError(`invalid duration "${text}": expected a number with a unit, e.g. "250ms", "5s", "2m", "1h"`)
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2]])
}

/** Formats milliseconds back into the shortest exact duration string (`4000` → `"4s"`). */
export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms !== 0) return `${ms / 3_600_000}h`
  if (ms % 60_000 === 0 && ms !== 0) return `${ms / 60_000}m`
  if (ms % 1000 === 0 && ms !== 0) return `${ms / 1000}s`
  return `${ms}ms`
}

const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1,
  kb: 1000, mb: 1000 ** 2, gb: 1000 ** 3,
  kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3,
}
const SIZE_RE = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i

/**
 * Parses a size such as `"64KiB"`, `"1MiB"`, `"10MB"`, `"512"` (bytes). Binary units
 * (KiB, MiB, GiB) are powers of 1024, decimal ones (KB, MB, GB) powers of 1000.
 *
 * @returns the size in bytes
 * @throws {RangeError} when the text is not a number with an optional known unit
 */
export function parseSize(text: string | number): number {
  if (typeof text === 'number') {
    if (Number.isInteger(text) && text >= 0) return text
    throw new RangeError(`invalid size ${text}: expected a whole number of bytes`)
  }
  const m = SIZE_RE.exec(text.trim())
  const unit = m ? SIZE_UNITS[m[2].toLowerCase()] : undefined
  if (!m || unit === undefined) throw new RangeError(`invalid size "${text}": expected a number with a unit, e.g. "64KiB", "1MiB", "10MB"`)
  return Math.round(Number(m[1]) * unit)
}

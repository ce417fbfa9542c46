/**
 * HTTP modes that answer correctly but late or in drips ('slow', 'slow-body'): the
 * upstream is healthy, only its timing decides whether a proxy times out.
 */
import type { LabContext } from './context.ts'
import type { Handler } from './ok.ts'

/** Latency as a fixed number of ms, or a distribution given by its median and 99th percentile in ms. */
export type Latency = number | { p50: number; p99: number }

/** Default latency of 'slow': median 50 ms, p99 400 ms. */
export const DEFAULT_LATENCY: Latency = { p50: 50, p99: 400 }

/** z-score of the 99th percentile of the standard normal distribution. */
const Z99 = 2.3263478740408408

/**
 * Draws one delay in ms. A distribution is log-normal (service latencies are skewed to the
 * right) with median `p50` and 99th percentile `p99`.
 *
 * @param random source of uniform numbers in [0, 1), for reproducible tests
 * @throws {RangeError} when a value is negative or p99 < p50
 */
export function sampleLatency(latency: Latency, random: () => number = Math.random): number {
  if (typeof latency === 'number') {
    if (!(latency >= 0)) throw new RangeError(`invalid latencyMs ${latency}: expected a number of ms >= 0`)
    return latency
  }
  const { p50, p99 } = latency
  if (!(p50 > 0) || !(p99 >= p50)) throw new RangeError(`invalid latencyMs { p50: ${p50}, p99: ${p99} }: expected 0 < p50 <= p99`)
  const sigma = Math.log(p99 / p50) / Z99
  // Box–Muller: two uniforms give one standard normal draw.
  const z = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random())
  return Math.round(p50 * Math.exp(sigma * z))
}

/** 'slow': the healthy routes of `inner`, each answered after a delay drawn from `latency`. */
export function slowHandler(latency: Latency, inner: Handler, context: LabContext): Handler {
  sampleLatency(latency) // validate once, at start-up
  return (req, res) => {
    const t = context.after(sampleLatency(latency), () => inner(req, res))
    res.once('close', () => context.cancel(t))
  }
}

/** Size of each dripped chunk of 'slow-body', in bytes. */
export const DRIP_BYTES = 1024

/**
 * 'slow-body': 200 with Content-Length `bodyBytes`, the header and a first 1 KiB chunk at
 * once, then one 1 KiB chunk every `chunkIntervalMs` ms until the body is complete.
 */
export function slowBodyHandler(bodyBytes: number, chunkIntervalMs: number, context: LabContext): Handler {
  const chunk = Buffer.alloc(DRIP_BYTES, 'x')
  return (req, res) => {
    req.resume()
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bodyBytes })
    let left = bodyBytes
    const drip = (): boolean => {
      const n = Math.min(left, DRIP_BYTES)
      left -= n
      res.write(chunk.subarray(0, n))
      if (left > 0) return false
      res.end()
      return true
    }
    if (req.method === 'HEAD' || bodyBytes === 0) return void res.end()
    if (drip()) return
    const t = context.every(chunkIntervalMs, () => {
      if (drip()) context.cancel(t)
    })
    res.once('close', () => context.cancel(t))
  }
}

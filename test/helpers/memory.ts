/**
 * Memory sampling for streaming tests: the peak growth of the process RSS while a
 * transfer runs. Garbage is collected before each sample, so the figure is memory held
 * (buffered data), not garbage that a later collection would free anyway.
 */
import v8 from 'node:v8'
import vm from 'node:vm'

v8.setFlagsFromString('--expose-gc')
/** A full garbage collection (V8's `gc()`, exposed at run time rather than by a command-line flag). */
const collect = vm.runInNewContext('gc') as (opts?: { type: 'major' | 'minor' }) => void

/**
 * Runs `work` while sampling `process.memoryUsage.rss()` every `everyMs` ms, each sample
 * after a full collection.
 *
 * @returns the work's result, the peak growth in bytes over the RSS at the start, and the number of samples
 */
export async function peakRssGrowth<T>(work: () => Promise<T>, everyMs = 20): Promise<{ result: T; growth: number; samples: number }> {
  const sample = (): number => {
    collect({ type: 'minor' })
    return process.memoryUsage.rss()
  }
  const base = sample()
  let peak = base
  let samples = 0
  const timer = setInterval(() => {
    samples++
    peak = Math.max(peak, sample())
  }, everyMs)
  try {
    const result = await work()
    return { result, growth: peak - base, samples }
  } finally {
    clearInterval(timer)
  }
}

/** `total` bytes in chunks of `chunkBytes`, all views of one buffer (so the source itself holds no memory). */
export function* zeroChunks(total: number, chunkBytes = 64 * 1024): Generator<Buffer> {
  const chunk = Buffer.alloc(chunkBytes, 'z')
  for (let left = total; left > 0; left -= chunkBytes) yield left >= chunkBytes ? chunk : chunk.subarray(0, left)
}

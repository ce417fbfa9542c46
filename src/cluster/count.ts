/**
 * How many workers `workers` means, apart from the primary's code: a single-process
 * `portico serve` asks it without loading the cluster machinery.
 */
import type { Config } from '../config/schema.ts'

/** The config's `workers` as a number: `auto` is one per CPU this process may use. */
export async function workerCount(workers: Config['workers']): Promise<number> {
  if (workers !== 'auto') return workers
  const os = await import('node:os')
  return os.availableParallelism()
}

/**
 * Helpers of the buffering tests: a budget in a fresh temporary directory, and the
 * temporary files this process holds open there (unlinked files still show in /proc/self/fd).
 */
import { mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { BufferBudget, type BufferLimits } from '../../src/protect/spill.ts'

/** A budget whose temporary files go to a new directory; `cleanup` removes the directory. */
export function testBudget(limits: Partial<Omit<BufferLimits, 'tempDir'>> = {}): { budget: BufferBudget; dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'portico-buffer-test-'))
  const budget = new BufferBudget({
    memory: 64 * 1024, maxTempFile: 1024 ** 3, maxMemoryTotal: 64 * 1024 ** 2, maxTempTotal: 4 * 1024 ** 3, tempDir: dir, ...limits,
  })
  return { budget, dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

/** Descriptors of this process open on files of `dir` (deleted or not). */
export function openTempFiles(dir: string): string[] {
  const out: string[] = []
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`)
      if (target.startsWith(dir + path.sep)) out.push(target)
    } catch {
      // closed meanwhile
    }
  }
  return out
}

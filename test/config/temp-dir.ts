// A scratch directory for one test file: made before its tests, removed after them.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before } from 'node:test'

/**
 * Registers before/after hooks that create and remove a temporary directory.
 *
 * @returns a function giving the directory's path (valid inside tests)
 */
export function useTempDir(prefix: string): () => string {
  let dir = ''
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), prefix))
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })
  return () => dir
}

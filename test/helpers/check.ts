/** `portico check` as the tests run it: checkCommand on a file, with what it wrote. */
import { PassThrough } from 'node:stream'
import { checkCommand } from '../../src/cli/check.ts'

/** Runs checkCommand and returns its exit code and what it wrote to each stream. */
export async function check(file: string): Promise<{ code: number; out: string; err: string }> {
  const out = new PassThrough()
  const err = new PassThrough()
  const chunks = { out: '', err: '' }
  out.on('data', (c: Buffer) => (chunks.out += c))
  err.on('data', (c: Buffer) => (chunks.err += c))
  const code = await checkCommand(file, out, err)
  out.end()
  err.end()
  return { code, ...chunks }
}

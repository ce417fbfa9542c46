/** Child processes of tests (a `portico serve` started by hand): waiting for what they print. */
import type { ChildProcess } from 'node:child_process'

/**
 * Collects `child`'s stderr and resolves once it contains `text` (`listening on`), with a
 * reader of everything written so far.
 *
 * @param waitMs ms before it gives up
 * @throws {Error} (rejects) when the child exits first or `waitMs` pass; the message holds its stderr
 */
export function untilStderr(child: ChildProcess, text: string, waitMs = 30_000): Promise<() => string> {
  let stderr = ''
  const read = (): string => stderr
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "${text}" on stderr:\n${stderr}`)), waitMs)
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d
      if (stderr.includes(text)) {
        clearTimeout(timer)
        resolve(read)
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`exited ${code}:\n${stderr}`))
    })
  })
}

/** Source files for the tests that read the code itself (import levels, who names a cause). */
import { readdirSync } from 'node:fs'
import path from 'node:path'

/** Every `.ts` file under `dir`, at any depth, as paths joined to `dir`. */
export function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => path.join(e.parentPath, e.name))
}

// A worker is cheap: its program loads the request path only (no admin, CLI, doctor, lab
// or convert code), and the primary loads none of the request path's server, proxy
// driver or cache code. Checked on the static imports of each entry point.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'

const SRC = fileURLToPath(new URL('../../src/', import.meta.url))

/** Every source file `entry` loads through static imports (type-only imports load nothing). */
function loaded(entry: string): Set<string> {
  const seen = new Set<string>()
  const todo = [path.join(SRC, entry)]
  while (todo.length > 0) {
    const file = todo.pop()!
    if (seen.has(file)) continue
    seen.add(file)
    const text = readFileSync(file, 'utf8')
    const re = /^\s*(?:import|export)\s+(?!type\b)(?:[^'"]*?\sfrom\s*)?['"](\.{1,2}\/[^'"]+)['"]/gm
    for (let m = re.exec(text); m !== null; m = re.exec(text)) todo.push(path.resolve(path.dirname(file), m[1]))
  }
  return new Set([...seen].map((f) => path.relative(SRC, f)))
}

test('a worker loads no admin, CLI, doctor, lab or convert code', () => {
  const files = [...loaded('cluster/worker-main.ts')]
  assert.deepEqual(files.filter((f) => /^(admin|cli|doctor|lab|convert)\//.test(f)), [])
  assert.ok(files.includes('server/gateway.ts'), 'it loads the request path')
})

test('the primary loads neither the listeners nor the request driver nor the cache', () => {
  const files = [...loaded('cluster/primary.ts')]
  // It keeps the host's counts of local rate limits (protect/rate-limit.ts), nothing else of the request path.
  assert.deepEqual(files.filter((f) => /^(server|cache|protect|routing|doctor|lab)\/|^proxy\/(driver|exchange|upgrade)\.ts$/.test(f) && f !== 'protect/rate-limit.ts'), [])
})

/**
 * The folders of src/ import one way, top to bottom, in the order of DESIGN §5:
 * cli → admin, convert → doctor → lab → cluster → server → proxy → protect, cache →
 * upstream, routing → observe → failures, config → lib (convert reads nginx
 * configurations with doctor's reader; doctor's drills may start lab upstreams). An import that runs back up (or
 * sideways between two folders of one level) fails here with the file and the line.
 */
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { sourceFiles } from '../helpers/files.ts'

const SRC = fileURLToPath(new URL('../../src/', import.meta.url))

/** Each top-level folder of src/ and its level: a folder may import only folders of a higher number. */
export const LEVELS: Record<string, number> = {
  cli: 0,
  admin: 1, convert: 1,
  doctor: 2,
  lab: 3,
  cluster: 4,
  server: 5,
  proxy: 6,
  protect: 7, cache: 7,
  upstream: 8, routing: 8,
  observe: 9,
  failures: 10, config: 10,
  lib: 11,
}

/** The relative imports of a source file (static, dynamic and re-exports), with their 1-based line. */
export function relativeImports(text: string): Array<{ spec: string; line: number }> {
  const found: Array<{ spec: string; line: number }> = []
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"](\.{1,2}\/[^'"]+)['"]/gm
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    found.push({ spec: m[1], line: text.slice(0, m.index).split('\n').length })
  }
  return found
}

/** The top-level folder of src/ that `file` lies in, or null for a file outside src/. */
function folderOf(file: string): string | null {
  const rel = path.relative(SRC, file)
  if (rel.startsWith('..')) return null
  const parts = rel.split(path.sep)
  return parts.length > 1 ? parts[0] : null
}

test('every folder of src/ has a level', () => {
  const folders = readdirSync(SRC, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name)
  assert.deepEqual(folders.filter((f) => LEVELS[f] === undefined), [], 'give new folders a level in LEVELS and in DESIGN §5')
})

test('imports between folders of src/ run one way, top to bottom', () => {
  const wrong: string[] = []
  for (const file of sourceFiles(SRC)) {
    const from = folderOf(file)
    if (from === null) continue
    for (const { spec, line } of relativeImports(readFileSync(file, 'utf8'))) {
      const to = folderOf(path.resolve(path.dirname(file), spec))
      if (to === null || to === from) continue
      if (!(LEVELS[to] > LEVELS[from])) wrong.push(`src/${path.relative(SRC, file)}:${line}: ${from} imports ${to} (${spec})`)
    }
  }
  assert.deepEqual(wrong, [])
})

test('the import scanner sees every import form', () => {
  const text = "import a from '../x/a.ts'\nimport type { B } from '../y/b.ts'\nexport { c } from './c.ts'\nconst d = await import('../z/d.ts')\nimport '../w/side.ts'\n"
  assert.deepEqual(relativeImports(text).map((i) => `${i.line}:${i.spec}`), ['1:../x/a.ts', '2:../y/b.ts', '3:./c.ts', '4:../z/d.ts', '5:../w/side.ts'])
})

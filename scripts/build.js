#!/usr/bin/env node
// Builds dist/: the TypeScript sources as plain JavaScript (tsc, types erased, comments
// dropped, `.ts` import specifiers rewritten to `.js`) plus the other files of src/, which bin/portico.js runs instead of
// the sources when it is up to date (see there why). Run by `npm install` (prepare) and
// `npm start`; `--if-stale` skips a build that is already newer than every source.
// Without TypeScript installed (a production install) it says so and leaves the sources in use.
import { cpSync, existsSync, readdirSync, rmSync, statSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const tsc = `${root}node_modules/typescript/bin/tsc`
const marker = `${root}dist/cli/main.js`

function newestSource(dir) {
  let t = 0
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = `${dir}/${e.name}`
    t = Math.max(t, e.isDirectory() ? newestSource(p) : statSync(p).mtimeMs)
  }
  return t
}

if (process.argv.includes('--if-stale') && existsSync(marker) && statSync(marker).mtimeMs >= newestSource(`${root}src`)) process.exit(0)
if (!existsSync(tsc)) {
  process.stderr.write('portico build: typescript is not installed; bin/portico.js runs the TypeScript sources\n')
  process.exit(0)
}
rmSync(`${root}dist`, { recursive: true, force: true })
execFileSync(process.execPath, [tsc, '-p', `${root}tsconfig.build.json`], { stdio: 'inherit' })
// Files the code reads beside itself (the dashboard's CSS and client script) go along.
cpSync(`${root}src`, `${root}dist`, { recursive: true, filter: (p) => statSync(p).isDirectory() || !p.endsWith('.ts') })
// The copy is newer than every source file: bin/portico.js takes dist/ as up to date.
const now = new Date()
const { utimesSync } = await import('node:fs')
utimesSync(marker, now, now)

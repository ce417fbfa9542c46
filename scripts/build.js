#!/usr/bin/env node
// Builds dist/: `portico serve` and the other commands as a few bundled JavaScript files
// (esbuild: types erased, Portico's modules and most dependencies joined; each command
// module and the config validator's child a chunk of its own, loaded on use), plus the
// files the code reads beside itself (the dashboard's CSS and client script).
// bin/portico.js runs it instead of the sources when it is up to date (see there why).
// Run by `npm install` (prepare) and `npm start`; `--if-stale` skips a build that is
// already newer than every file of src/. Without esbuild installed (a production install
// without dev dependencies) it says so and leaves the sources in use. `--outdir DIR`
// builds elsewhere than dist/ (the build's own test does).
import { copyFileSync, existsSync, readdirSync, rmSync, statSync, utimesSync } from 'node:fs'
import { basename } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const at = process.argv.indexOf('--outdir')
const dist = at > 0 ? process.argv[at + 1] : `${root}dist`
const marker = `${dist}/portico.js`

/** Every file under `dir`. */
function files(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(`${dir}/${e.name}`) : [`${dir}/${e.name}`]))
}

const sources = files(`${root}src`)
if (process.argv.includes('--if-stale') && existsSync(marker)) {
  const builtAt = statSync(marker).mtimeMs
  if (sources.every((f) => statSync(f).mtimeMs <= builtAt)) process.exit(0)
}
let esbuild
try {
  esbuild = await import('esbuild')
} catch {
  process.stderr.write('portico build: esbuild is not installed; bin/portico.js runs the TypeScript sources\n')
  process.exit(0)
}
rmSync(dist, { recursive: true, force: true })
await esbuild.build({
  absWorkingDir: root,
  // Flat: the validator's child (load-child.js) and a worker's program (worker-main.js) sit
  // beside the chunks that start them, as they sit beside their starters in src/.
  entryPoints: { portico: 'src/cli/main.ts', 'load-child': 'src/config/load-child.ts', 'worker-main': 'src/cluster/worker-main.ts' },
  outdir: dist,
  chunkNames: '[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node26',
  // Bundled CommonJS dependencies call require(): give each chunk one.
  banner: { js: "import { createRequire as __portico_createRequire } from 'node:module'; const require = __portico_createRequire(import.meta.url);" },
  legalComments: 'none',
  logLevel: 'warning',
})
// Files read beside the code (import.meta.url), flat in dist/ as the code is.
for (const f of sources.filter((f) => !f.endsWith('.ts'))) {
  const to = `${dist}/${basename(f)}`
  if (existsSync(to)) throw new Error(`portico build: two files named ${basename(f)} in src/`)
  copyFileSync(f, to)
}
// The entry is made newer than every source file, whatever the copies' times.
const now = new Date()
utimesSync(marker, now, now)

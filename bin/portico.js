#!/usr/bin/env node
// Entry point for `npx portico` and `npm start`. The CLI is TypeScript run by Node's type
// stripping, so it needs Node.js 26: the pinned one comes from the `node` npm package and
// npm puts it first on PATH. There is no `engines` field, because npm checks that against
// the Node.js that runs npm itself (often an older system one) and warns on every call;
// the check is here instead, with a message that says what to do.
const REQUIRED = 26
const major = Number(process.versions.node.split('.')[0])
if (major < REQUIRED) {
  process.stderr.write(
    `portico needs Node.js ${REQUIRED} or newer; this is Node.js ${process.versions.node} (${process.execPath}).\n` +
    `Run it through npm, which uses the Node.js ${REQUIRED} installed with Portico (the "node" package):\n` +
    `  npm install && npx portico --help\n`)
  process.exit(1)
}
await import(await entry())

/**
 * The built JavaScript (dist/, bundled by `npm install` through `npm run build`) when it is
 * there and not older than any file of src/, else the TypeScript sources. Why: Node's type
 * stripping loads a WebAssembly transformer at start (about 30 MB of RSS per process), and
 * loading some 150 modules one by one costs more again than a few bundled files (about 7 MB:
 * resolving them warms the JIT compilers); bench/memory.ts measures it. The sources stay the
 * truth (tests run them), so a stale build is never used. PORTICO_SOURCE=1 forces the sources.
 */
async function entry() {
  const src = new URL('../src/cli/main.ts', import.meta.url)
  const built = new URL('../dist/portico.js', import.meta.url)
  if (process.env.PORTICO_SOURCE === '1') return src.href
  const { statSync, readdirSync } = await import('node:fs')
  let builtAt
  try { builtAt = statSync(built).mtimeMs } catch { return src.href }
  const stale = (dir) => readdirSync(dir, { withFileTypes: true }).some((e) => {
    const p = `${dir}/${e.name}`
    return e.isDirectory() ? stale(p) : statSync(p).mtimeMs > builtAt
  })
  return stale(new URL('../src', import.meta.url).pathname) ? src.href : built.href
}

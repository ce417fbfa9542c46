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
await import('../src/cli/main.ts')

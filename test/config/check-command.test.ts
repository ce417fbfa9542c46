// `portico check`: exit codes and output of checkCommand (src/cli/check.ts), on real files.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { check } from '../helpers/check.ts'
import { useTempDir } from './temp-dir.ts'

const dir = useTempDir('portico-check-')

test('a valid file prints a one-line summary to out and exits 0', async () => {
  const file = join(dir(), 'portico.yaml')
  await writeFile(file, `listeners:
  - address: 127.0.0.1:0
routes:
  - upstream: api
    match: { path_prefix: /api }
  - upstream: web
  - upstream: web
    match: { host: static.example.com }
upstreams:
  api:
    endpoints: ["http://127.0.0.1:3001", "http://127.0.0.1:3002", { url: "http://127.0.0.1:3003", weight: 2 }]
  web:
    endpoints: ["http://127.0.0.1:4001", "http://127.0.0.1:4002"]
`)
  const r = await check(file)
  assert.deepEqual(r, { code: 0, out: 'portico.yaml: ok (1 listener, 3 routes, 2 upstreams, 5 endpoints)\n', err: '' })
})

test('an invalid file prints file:line:column problems to err and exits 1', async () => {
  const file = join(dir(), 'bad.yaml')
  await writeFile(file, `listeners:
  - address: 127.0.0.1:0
routes:
  - upstream: apii
upstreams:
  api:
    endpoints: ["http://127.0.0.1:3001"]
    timeout: { connect: 1s }
`)
  const r = await check(file)
  assert.equal(r.code, 1)
  assert.equal(r.out, '')
  assert.equal(r.err, [
    `${file}:4:15: routes[0].upstream: unknown upstream "apii"; defined: api`,
    `${file}:8:5: upstreams.api.timeout: unknown key "timeout" (did you mean "timeouts"?)`,
    '',
  ].join('\n'))
})

test('a missing file exits 1 with the OS error', async () => {
  const file = join(dir(), 'absent.yaml')
  const r = await check(file)
  assert.equal(r.code, 1)
  assert.match(r.err, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:1:1: cannot read the config file: ENOENT`))
})

test('examples/portico.yaml passes', async () => {
  const r = await check(new URL('../../examples/portico.yaml', import.meta.url).pathname)
  assert.equal(r.err, '')
  assert.equal(r.code, 0)
  assert.match(r.out, /^portico\.yaml: ok \(\d+ listeners?, \d+ routes?, \d+ upstreams?, \d+ endpoints?\)\n$/)
})

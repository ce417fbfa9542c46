// `portico serve` with a TLS listener and a token-guarded admin API, as a process: the
// start-up line says https://, `portico reload` reaches the guarded API, and a public
// admin address without a token stops the start with file:line:column.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { makeCertificate } from '../../src/lab/index.ts'
import { freePort, portico, serve } from '../admin/serve-process.ts'

const dir = mkdtempSync(join(tmpdir(), 'portico-tls-process-'))
after(() => rmSync(dir, { recursive: true, force: true }))

test('the start-up line says https:// for a TLS listener; portico reload sends the admin token', async () => {
  const pair = makeCertificate({ commonName: 'localhost' })
  writeFileSync(join(dir, 'site.crt'), pair.cert)
  writeFileSync(join(dir, 'site.key'), pair.key)
  writeFileSync(join(dir, 'admin.token'), 'process-test-token\n')
  const [listen, plain, admin] = [await freePort(), await freePort(), await freePort()]
  const file = join(dir, 'portico.yaml')
  writeFileSync(file, `listeners:
  - address: 127.0.0.1:${listen}
    tls: { certificates: [{ cert: "${join(dir, 'site.crt')}", key: "${join(dir, 'site.key')}" }], hsts: {} }
  - address: 127.0.0.1:${plain}
routes: [{ upstream: app }]
upstreams: { app: { endpoints: ["http://127.0.0.1:9"] } }
admin: { address: "127.0.0.1:${admin}", token_file: "${join(dir, 'admin.token')}" }
`)
  const p = await serve(file)
  assert.match(p.stderr(), new RegExp(`listening on https://127\\.0\\.0\\.1:${listen}\\n`))
  assert.match(p.stderr(), new RegExp(`listening on http://127\\.0\\.0\\.1:${plain}\\n`))
  const denied = await fetch(`http://127.0.0.1:${admin}/config`)
  assert.equal(denied.status, 401)
  await denied.arrayBuffer()
  const reload = portico(['reload', '-c', file])
  const { code } = await reload.exited
  assert.equal(code, 0, reload.stderr())
  assert.match(reload.stdout(), /reloaded/)
  p.child.kill('SIGTERM')
  await p.exited
})

test('an admin address that is not loopback and has no token stops the start with file:line:column', async () => {
  const file = join(dir, 'public-admin.yaml')
  writeFileSync(file, `listeners: [{ address: "127.0.0.1:0" }]
routes: [{ upstream: app }]
upstreams: { app: { endpoints: ["http://127.0.0.1:9"] } }
admin:
  address: "0.0.0.0:9901"
`)
  const p = portico(['serve', '-c', file])
  const { code } = await p.exited
  assert.equal(code, 1)
  assert.match(p.stderr(), /public-admin\.yaml:\d+:\d+: .*the admin API on a non-loopback address needs admin\.token_file/)
})

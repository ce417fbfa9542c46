// portico serve as a process under steady load: SIGHUP and POST /reload swap routes with zero failed requests; broken files are refused with line:column; portico reload.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, test } from 'node:test'
import { startLab, type LabServer } from '../../src/lab/index.ts'
import { useTempDir } from '../config/temp-dir.ts'
import { freePort, portico, serve, steadyLoad, until } from '../admin/serve-process.ts'

const dir = useTempDir('portico-reload-process-')
let labs: LabServer[] = []
afterEach(async () => {
  await Promise.all(labs.map((l) => l.close()))
  labs = []
})

/** Two 'ok' upstreams named a and b, the listen and admin addresses, and the config file path. */
async function setup(name: string) {
  labs = [await startLab('ok', { name: 'a' }), await startLab('ok', { name: 'b' })]
  return { a: labs[0], b: labs[1], listen: `127.0.0.1:${await freePort()}`, admin: `127.0.0.1:${await freePort()}`, file: join(dir(), name) }
}

function config(listen: string, admin: string, route: string, a: LabServer, b: LabServer): string {
  return `listeners: [{ address: "${listen}" }]
routes:
  - name: main
    upstream: ${route}
upstreams:
  a: { endpoints: ["${a.url}"] }
  b: { endpoints: ["${b.url}"] }
admin: { address: "${admin}" }
shutdown: { drain_timeout: 5s }
`
}

/** The route line points at an upstream that does not exist: routes[0].upstream at line 4, column 15. */
const BROKEN_AT = /:4:15: routes\[0\]\.upstream: unknown upstream "missing"/

test('reload under load: SIGHUP follows the new route, broken files are refused, zero failed requests', { timeout: 60_000 }, async () => {
  const { a, b, listen, admin, file } = await setup('portico.yaml')
  await writeFile(file, config(listen, admin, 'a', a, b))
  const p = await serve(file)
  const load = steadyLoad(`http://${listen}/`, 7000)
  const reloads = () => p.stderr().split('\n').filter((l) => l.includes('"msg":"reloaded')).length

  await new Promise((r) => setTimeout(r, 1000))
  await writeFile(file, config(listen, admin, 'b', a, b))
  p.child.kill('SIGHUP')
  await until('the SIGHUP reload', () => reloads() === 1)

  await new Promise((r) => setTimeout(r, 500))
  await writeFile(file, config(listen, admin, 'missing', a, b))
  p.child.kill('SIGHUP')
  await until('the refusal on stderr', () => BROKEN_AT.test(p.stderr()))
  assert.match(p.stderr(), /reload refused/)

  const res = await fetch(`http://${admin}/reload`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  assert.equal(res.status, 400)
  const body = await res.json() as { ok: boolean; problems: Array<{ file: string; line: number; column: number; message: string }> }
  assert.equal(body.ok, false)
  assert.deepEqual(body.problems.map((x) => [x.file, x.line, x.column]), [[file, 4, 15]])

  await new Promise((r) => setTimeout(r, 500))
  await writeFile(file, config(listen, admin, 'a', a, b))
  const ok = await fetch(`http://${admin}/reload`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  assert.equal(ok.status, 200)
  assert.deepEqual((await ok.json() as { upstreams: { kept: string[] } }).upstreams.kept, ['a', 'b'])

  const result = await load
  assert.deepEqual(result.failures, [], 'no request failed during the reloads')
  assert.ok(result.sent > 300, `steady load (${result.sent} requests)`)
  assert.ok((result.servers.get('a') ?? 0) > 50 && (result.servers.get('b') ?? 0) > 50, `traffic followed the routes: ${JSON.stringify([...result.servers])}`)
  assert.equal(reloads(), 2)

  p.child.kill('SIGTERM')
  assert.deepEqual(await p.exited, { code: 0, signal: null })
})

test('portico reload: validates the file, then reloads the running instance; an invalid file exits 1 with its problems', { timeout: 60_000 }, async () => {
  const { a, b, listen, admin, file } = await setup('cli.yaml')
  await writeFile(file, config(listen, admin, 'a', a, b))
  const p = await serve(file)

  await writeFile(file, config(listen, admin, 'b', a, b))
  const ok = portico(['reload', '-c', file])
  assert.equal((await ok.exited).code, 0, ok.stderr())
  assert.match(ok.stdout(), /^reloaded: 1 route; upstreams kept a, b/m)
  const res = await fetch(`http://${listen}/`)
  assert.equal((await res.json() as { server: string }).server, 'b')

  await writeFile(file, config(listen, admin, 'missing', a, b))
  const bad = portico(['reload', '-c', file])
  assert.equal((await bad.exited).code, 1)
  assert.match(bad.stderr(), BROKEN_AT)
  assert.ok(!p.stderr().includes('reload refused'), 'an invalid file never reaches the running instance')

  p.child.kill('SIGTERM')
  assert.equal((await p.exited).code, 0)
  await writeFile(file, config(listen, admin, 'a', a, b))
  const gone = portico(['reload', '-c', file])
  assert.equal((await gone.exited).code, 1)
  assert.match(gone.stderr(), /cannot reach the admin API .*ECONNREFUSED/)
})

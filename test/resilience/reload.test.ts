// Reload in process: atomic swap, kept pools, in-flight requests finish on the old runtime, bad files refused.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import net from 'node:net'
import { join } from 'node:path'
import { test } from 'node:test'
import { loadConfigFile } from '../../src/config/load.ts'
import { memoryAccessLog } from '../../src/observe/access-log.ts'
import { Gateway } from '../../src/server/gateway.ts'
import { useTempDir } from '../config/temp-dir.ts'
import { freePort } from '../admin/serve-process.ts'
import { testEnv, waitFor } from '../helpers/gateway.ts'
import { AdminServer } from '../../src/admin/server.ts'

const env = testEnv()
const dir = useTempDir('portico-reload-')

function yaml(listen: string[], upstreams: Record<string, string>, route: string): string {
  return [
    `listeners: [${listen.map((a) => `{ address: "${a}" }`).join(', ')}]`,
    `routes: [{ name: main, upstream: ${route} }]`,
    'upstreams:',
    ...Object.entries(upstreams).map(([n, url]) => `  ${n}: { endpoints: ["${url}"] }`),
    '',
  ].join('\n')
}

async function startFrom(file: string): Promise<{ gw: Gateway; origin: string }> {
  const gw = new Gateway(await loadConfigFile(file), { accessLog: memoryAccessLog(), loadConfig: () => loadConfigFile(file), admin: (g) => new AdminServer(g) })
  await gw.start()
  env.defer(() => gw.stop(0))
  return { gw, origin: `http://127.0.0.1:${gw.listeners[0].address.port}` }
}

async function server(origin: string, path = '/'): Promise<string> {
  const res = await fetch(`${origin}${path}`)
  assert.equal(res.status, 200)
  return (await res.json() as { server: string }).server
}

test('reload swaps the route; unchanged upstreams keep their pool; in-flight requests finish on the retired pool', async () => {
  const a = await env.lab('ok', { name: 'a' })
  const b = await env.lab('ok', { name: 'b' })
  const keep = await env.lab('ok', { name: 'keep' })
  const file = join(dir(), 'swap.yaml')
  await writeFile(file, yaml(['127.0.0.1:0'], { a: a.url, keep: keep.url }, 'a'))
  const { gw, origin } = await startFrom(file)
  assert.equal(await server(origin), 'a')
  const poolA = gw.runtime.pools.get('a')!
  const poolKeep = gw.runtime.pools.get('keep')!

  const slow = fetch(`${origin}/delay/400`)
  await waitFor('the slow request to reach a', () => (poolA.endpoints[0].inFlight > 0 ? true : undefined))
  await writeFile(file, yaml(['127.0.0.1:0'], { b: b.url, keep: keep.url }, 'b'))
  const outcome = await gw.reloadFromSource()
  assert.ok(outcome.ok)
  assert.deepEqual(outcome.summary.upstreams, { kept: ['keep'], replaced: [], added: ['b'], removed: ['a'] })
  assert.equal(gw.runtime.pools.get('keep'), poolKeep, 'unchanged upstream keeps its pool')
  assert.equal(await server(origin), 'b', 'new requests follow the new route')
  assert.equal(poolA.endpoints[0].dispatcher.closed, false, 'the retired pool stays open while a request is in flight')

  const res = await slow
  assert.equal(res.status, 200)
  assert.equal((await res.json() as { server: string }).server, 'a')
  await waitFor('the retired pool to close', () => (poolA.endpoints[0].dispatcher.closed ? true : undefined))
  assert.equal(poolKeep.endpoints[0].dispatcher.closed, false)
})

test('an invalid file is refused with line:column problems and the old config keeps serving', async () => {
  const a = await env.lab('ok', { name: 'a' })
  const file = join(dir(), 'broken.yaml')
  await writeFile(file, yaml(['127.0.0.1:0'], { a: a.url }, 'a'))
  const { gw, origin } = await startFrom(file)
  const before = gw.runtime
  await writeFile(file, yaml(['127.0.0.1:0'], { a: a.url }, 'nope'))
  const outcome = await gw.reloadFromSource()
  assert.equal(outcome.ok, false)
  assert.ok(!outcome.ok)
  assert.equal(outcome.problems.length, 1)
  assert.deepEqual({ ...outcome.problems[0], message: undefined }, { file, line: 2, column: 34, message: undefined })
  assert.match(outcome.problems[0].message, /unknown upstream "nope"/)
  assert.equal(gw.runtime, before)
  assert.equal(await server(origin), 'a')
})

test('listener addresses: a new one is bound, a removed one stops accepting; a taken address refuses the reload', async () => {
  const a = await env.lab('ok', { name: 'a' })
  const first = `127.0.0.1:${await freePort()}`
  const second = `127.0.0.1:${await freePort()}`
  const file = join(dir(), 'listeners.yaml')
  await writeFile(file, yaml([first], { a: a.url }, 'a'))
  const { gw } = await startFrom(file)

  await writeFile(file, yaml([second], { a: a.url }, 'a'))
  const outcome = await gw.reloadFromSource()
  assert.ok(outcome.ok)
  assert.deepEqual(outcome.summary.listeners, { kept: [], added: [second], removed: [first] })
  assert.equal(await server(`http://${second}`), 'a')
  await assert.rejects(fetch(`http://${first}/`), (e: Error & { cause?: { code?: string } }) => e.cause?.code === 'ECONNREFUSED')

  const taken = net.createServer()
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
  env.defer(() => new Promise<void>((resolve) => taken.close(() => resolve())))
  const busy = `127.0.0.1:${(taken.address() as net.AddressInfo).port}`
  await writeFile(file, yaml([second, busy], { a: a.url }, 'a'))
  const refused = await gw.reloadFromSource()
  assert.equal(refused.ok, false)
  assert.ok(!refused.ok && /EADDRINUSE/.test(refused.error))
  assert.deepEqual(gw.listeners.map((l) => l.config.address), [second])
  assert.equal(await server(`http://${second}`), 'a')
})

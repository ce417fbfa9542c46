// Config validation in a child process: the same config, the same problems, and a serving
// process that never loads the validator (nor other modules serving does not use).
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { loadConfigIsolated } from '../../src/config/isolated.ts'
import { ConfigError, loadConfigFile } from '../../src/config/load.ts'
import { quickConfig } from '../../src/config/quick.ts'
import { useTempDir } from './temp-dir.ts'

const tmp = useTempDir('portico-isolated-')
const EXAMPLE = new URL('../../examples/portico.yaml', import.meta.url).pathname

describe('loadConfigIsolated', () => {
  test('a file: the config equals loadConfigFile\'s, deep-frozen', async () => {
    const config = await loadConfigIsolated({ file: EXAMPLE })
    assert.deepEqual(config, await loadConfigFile(EXAMPLE))
    assert.ok(Object.isFrozen(config) && Object.isFrozen(config.listeners[0]))
  })

  test('quick mode: the config equals quickConfig\'s', async () => {
    const opts = { listen: '127.0.0.1:8080', to: ['http://127.0.0.1:3000'], logFormat: 'text' as const }
    assert.deepEqual(await loadConfigIsolated({ quick: opts }), quickConfig(opts))
  })

  test('an invalid file: a ConfigError with every problem at its line and column, as in-process', async () => {
    const file = join(tmp(), 'bad.yaml')
    await writeFile(file, 'listeners:\n  - address: 127.0.0.1:8080\nroutes:\n  - upstream: nope\nupstreams: {}\nbogus: 1\n')
    const inProcess = await loadConfigFile(file).then(() => assert.fail('accepted'), (e: unknown) => e as ConfigError)
    await assert.rejects(loadConfigIsolated({ file }), (err: unknown) => {
      assert.ok(err instanceof ConfigError)
      assert.equal(err.code, 'PORTICO_CONFIG_INVALID')
      assert.deepEqual(err.problems, inProcess.problems)
      assert.ok(err.problems.length >= 2)
      return true
    })
  })

  test('a missing file: the read error as a problem at 1:1', async () => {
    const file = join(tmp(), 'missing.yaml')
    await assert.rejects(loadConfigIsolated({ file }), (err: unknown) => {
      assert.ok(err instanceof ConfigError)
      assert.match(err.problems[0].message, /ENOENT/)
      assert.deepEqual([err.problems[0].line, err.problems[0].column], [1, 1])
      return true
    })
  })
})

test('serving loads neither the validator nor modules it does not use (memory per process)', async () => {
  // A child imports what `portico serve` imports and lists every module it resolved.
  const hooks = `import { registerHooks } from 'node:module'
const seen = new Set(); globalThis.__seen = seen
registerHooks({ resolve(spec, ctx, next) { const r = next(spec, ctx); seen.add(r.url); return r } })`
  // serve, and what a single process or a worker serves with (serve imports them on start).
  const modules = ['cli/serve.ts', 'server/gateway.ts', 'admin/server.ts', 'cluster/worker.ts'].map((m) => new URL(`../../src/${m}`, import.meta.url).href)
  const main = `for (const m of ${JSON.stringify(modules)}) await import(m)
process.stdout.write(JSON.stringify([...globalThis.__seen]))`
  const out = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(hooks)}`, '--input-type=module', '-e', main], (err, stdout, stderr) => err ? reject(new Error(stderr)) : resolve(stdout))
  })
  const seen: string[] = JSON.parse(out)
  assert.ok(seen.some((u) => u.endsWith('/src/server/gateway.ts')), 'the gateway was loaded')
  const unwanted = seen.filter((u) => /\/node_modules\/(zod|yaml|undici|commander|redis|@redis)\/|\/src\/(config\/(load|schema|json-schema)|doctor|lab|convert)\b|^node:(tls|https|http2|crypto|zlib)$/.test(u))
  assert.deepEqual(unwanted, [])
})

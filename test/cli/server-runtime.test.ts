// `portico serve` re-executes itself once with its V8 and malloc settings: same PID, same
// streams; PORTICO_NODE_DEFAULTS=1 keeps Node's defaults.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import http from 'node:http'
import { test } from 'node:test'
import { SERVE_ENV, SERVE_NODE_FLAGS } from '../../src/cli/server-runtime.ts'
import { WORKER_NODE_FLAGS, workerExecArgv } from '../../src/cluster/primary.ts'
import { untilStderr } from '../helpers/child.ts'
import { freePort } from '../helpers/ports.ts'

const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname

/** Starts `portico serve` in quick mode; resolves with the child once it listens, and its command line and environment as /proc shows them. */
async function serve(env: NodeJS.ProcessEnv, nodeArgs: string[] = [], workers = 1): Promise<{ pid: number; argv: string[]; environ: string[]; stop: () => Promise<number | string> }> {
  const port = await freePort()
  // The child is a server, not a test: without the runner's variables.
  env = { ...env }
  delete env.NODE_TEST_CONTEXT
  delete env.NODE_TEST_WORKER_ID
  const child = spawn(process.execPath, [...nodeArgs, MAIN, 'serve', '--workers', String(workers), '--listen', `127.0.0.1:${port}`, '--to', 'http://127.0.0.1:9'], { env, stdio: ['ignore', 'ignore', 'pipe'] })
  const stderr = await untilStderr(child, 'listening on')
  const pid = child.pid as number
  // It serves: the upstream (the discard port, closed) refuses, and Portico says so.
  const status = await new Promise<number>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => { res.resume(); resolve(res.statusCode ?? 0) }).on('error', reject)
  })
  assert.equal(status, 502)
  return {
    pid,
    argv: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean),
    environ: readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0'),
    stop: async () => {
      child.kill('SIGTERM')
      return new Promise((r) => child.once('exit', (code, signal) => r(code ?? `killed by ${signal}:\n${stderr()}`)))
    },
  }
}

test('serve runs with the server settings, in the process that was started, and stops cleanly', { timeout: 60_000 }, async () => {
  const env = { ...process.env }
  delete env.PORTICO_SERVER_RUNTIME
  delete env.PORTICO_NODE_DEFAULTS
  delete env.MALLOC_ARENA_MAX
  const s = await serve(env)
  for (const f of SERVE_NODE_FLAGS) assert.ok(s.argv.includes(f), `${f} in ${s.argv.join(' ')}`)
  for (const [k, v] of Object.entries(SERVE_ENV)) assert.ok(s.environ.includes(`${k}=${v}`), `${k}=${v}`)
  assert.equal(await s.stop(), 0)
})

test('settings already on the command line or in the environment win', { timeout: 60_000 }, async () => {
  const env: NodeJS.ProcessEnv = { ...process.env, MALLOC_ARENA_MAX: '4' }
  delete env.PORTICO_SERVER_RUNTIME
  delete env.PORTICO_NODE_DEFAULTS
  const s = await serve(env, ['--max-semi-space-size=8'])
  assert.equal(s.argv.filter((a) => a.startsWith('--max-semi-space-size')).join(' '), '--max-semi-space-size=8')
  assert.ok(s.environ.includes('MALLOC_ARENA_MAX=4'))
  assert.ok(s.environ.includes('PORTICO_SERVER_RUNTIME=1'), 'it was re-executed')
  assert.equal(await s.stop(), 0)
})

test('PORTICO_NODE_DEFAULTS=1 keeps Node\'s defaults: no re-exec', { timeout: 60_000 }, async () => {
  const env: NodeJS.ProcessEnv = { ...process.env, PORTICO_NODE_DEFAULTS: '1' }
  delete env.PORTICO_SERVER_RUNTIME
  delete env.MALLOC_ARENA_MAX
  const s = await serve(env)
  for (const f of SERVE_NODE_FLAGS) assert.ok(!s.argv.includes(f), `${f} not in ${s.argv.join(' ')}`)
  assert.ok(!s.environ.some((e) => e.startsWith('MALLOC_ARENA_MAX=') || e.startsWith('PORTICO_SERVER_RUNTIME=')))
  assert.equal(await s.stop(), 0)
})

test('a single serving process keeps V8\'s young generation; worker processes get theirs capped', { timeout: 60_000 }, async () => {
  assert.deepEqual(SERVE_NODE_FLAGS.filter((f) => f.startsWith('--max-semi-space-size')), [], 'workers: 1 keeps its speed')
  assert.deepEqual(workerExecArgv([...SERVE_NODE_FLAGS], ''), [...WORKER_NODE_FLAGS], 'the single process\'s flags are not the workers\'')
  assert.deepEqual(workerExecArgv(['--no-warnings'], ''), ['--no-warnings', ...WORKER_NODE_FLAGS])
  assert.deepEqual(workerExecArgv(['--max-semi-space-size=16'], ''), ['--max-semi-space-size=16'], 'a flag of the primary wins')
  assert.deepEqual(workerExecArgv([], '--max-semi-space-size=16 --no-warnings'), [], 'so does one in NODE_OPTIONS')
  const env = { ...process.env }
  delete env.PORTICO_SERVER_RUNTIME
  delete env.PORTICO_NODE_DEFAULTS
  const s = await serve(env, [], 2)
  // The primary's children, as the kernel lists them (no procps needed).
  const children = readFileSync(`/proc/${s.pid}/task/${s.pid}/children`, 'utf8').split(' ').filter(Boolean)
  assert.ok(children.length >= 2, `workers of ${s.pid}: ${children.join(' ')}`)
  const workers = children.map((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')).filter((argv) => argv.some((a) => a.includes('worker-main')))
  assert.equal(workers.length, 2, 'two worker processes')
  for (const argv of workers) for (const f of WORKER_NODE_FLAGS) assert.ok(argv.includes(f), `${f} in ${argv.join(' ')}`)
  assert.ok(!s.argv.includes('--max-semi-space-size=4'), 'the primary itself is not capped')
  for (const argv of workers) for (const f of SERVE_NODE_FLAGS) assert.ok(!argv.includes(f), `${f} not in ${argv.join(' ')}`)
  assert.equal(await s.stop(), 0)
})

/**
 * A newcomer's first minutes: `npx portico --help` lists every command on one line with
 * an example and no npm engine warning, an old Node.js gets a clear message, and
 * `npm start` prints its guide first, then readable text log lines.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { accessSync, constants, readFileSync } from 'node:fs'
import http from 'node:http'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const BIN = join(ROOT, 'bin', 'portico.js')
const COMMANDS = ['serve', 'check', 'reload', 'doctor', 'convert', 'lab', 'top', 'demo']

/** The environment of a user's shell: no test-runner variables (they silence the process log). */
function userEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env }
  delete env.NODE_TEST_CONTEXT
  delete env.NODE_OPTIONS
  return env
}

/** Executables of that name on PATH, in order. */
function onPath(name: string): string[] {
  return (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, name)).filter((f) => {
    try {
      accessSync(f, constants.X_OK)
      return true
    } catch {
      return false
    }
  })
}

const npm = onPath('npm')[0]

test('portico --help lists every command on one line, with an example of each', async () => {
  const { stdout } = await run(process.execPath, [BIN, '--help'], { env: userEnv() })
  const lines = stdout.split('\n')
  const start = lines.indexOf('Commands:')
  const end = lines.indexOf('', start)
  const listed = lines.slice(start + 1, end)
  for (const l of listed) assert.match(l, /^ {2}\S+.* {2,}\S/, `one line a command, with its summary: "${l}"`)
  const names = listed.map((l) => l.trim().split(' ')[0]).filter((n) => n !== 'help')
  for (const c of COMMANDS) assert.ok(names.includes(c), `${c} is listed`)
  // Every command listed, including ones added later, comes with an example.
  const examples = lines.slice(lines.indexOf('Examples:') + 1)
  for (const c of names) assert.ok(examples.some((l) => l.startsWith(`  portico ${c}`)), `an example of ${c}`)
  for (const c of names) {
    const own = await run(process.execPath, [BIN, c, '--help'], { env: userEnv() })
    assert.match(own.stdout, new RegExp(`Example:\\n {2}portico ${c}`), `portico ${c} --help ends with an example`)
  }
})

test('package.json has no engines field for npm to check against the Node.js that runs npm', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines?: unknown; scripts: Record<string, string> }
  assert.equal(pkg.engines, undefined)
  assert.equal(pkg.scripts.start, 'node bin/portico.js demo', 'npm start goes through the Node.js version check too')
})

test('npx portico prints no EBADENGINE warning', { skip: npm ? false : 'npm not on PATH', timeout: 60_000 }, async () => {
  const { stdout, stderr } = await run(npm as string, ['exec', '--offline', '--no', '--', 'portico', '--help'], { cwd: ROOT, env: userEnv() })
  assert.doesNotMatch(stderr, /EBADENGINE/)
  assert.match(stdout, /Commands:/)
})

/** A Node.js older than 26 found on PATH (the system one, typically), or null. */
async function oldNode(): Promise<string | null> {
  for (const n of onPath('node')) {
    const { stdout } = await run(n, ['-p', 'process.versions.node']).catch(() => ({ stdout: '99' }))
    if (Number(stdout.split('.')[0]) < 26) return n
  }
  return null
}

test('an older Node.js gets a clear message and exit status 1', { timeout: 30_000 }, async (t) => {
  const node = await oldNode()
  if (node === null) return t.skip('no Node.js older than 26 on PATH')
  const r = await run(node, [BIN, '--help'], { env: userEnv() }).then(() => null, (e: { code: number; stderr: string }) => e)
  assert.ok(r, 'the command fails')
  assert.equal(r.code, 1)
  assert.match(r.stderr, /portico needs Node\.js 26 or newer; this is Node\.js \d+/)
  assert.match(r.stderr, /npx portico/)
})

/** Collects a stream's text and resolves when it matches. */
function until(stream: NodeJS.ReadableStream, text: () => string, re: RegExp, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re} in:\n${text()}`)), ms)
    const check = () => {
      if (re.test(text())) {
        clearTimeout(timer)
        stream.off('data', check)
        resolve()
      }
    }
    stream.on('data', check)
    check()
  })
}

function get(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get(url, { agent: false }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)) }).on('error', reject)
  })
}

test('npm start prints the guide first, then text log lines, and no warning about the demo\'s .invalid name', { timeout: 60_000 }, async (t) => {
  // npm start as a user runs it; the node binary directly when npm is absent.
  const [cmd, args] = npm ? [npm, ['start', '--silent', '--', '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']] : [process.execPath, [BIN, 'demo', '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']]
  const child: ChildProcess = spawn(cmd, args, { cwd: ROOT, env: userEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  t.after(async () => {
    if (child.exitCode === null && child.pid !== undefined) {
      // npm runs the demo in a child process: stop the group this test started.
      process.kill(-child.pid, 'SIGINT')
      await new Promise((r) => child.once('exit', r))
    }
  })
  let out = ''
  let err = ''
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d))
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d))
  await until(child.stderr as NodeJS.ReadableStream, () => err, /Stop with Ctrl-C\./, 30_000)
  const firstLine = err.split('\n').find((l) => l.trim() !== '') ?? ''
  assert.match(firstLine, /^Portico demo: listening on http:\/\/127\.0\.0\.1:\d+/, `the guide comes first:\n${err}`)
  assert.match(err, /\/dns .*never resolves, on purpose/, 'the guide explains the .invalid name')
  const base = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(err)?.[1] as string
  assert.equal(await get(`${base}/ok`), 200)
  assert.equal(await get(`${base}/dns`), 502)
  const dashboard = /Dashboard \(live causes, per endpoint\): (http:\/\/127\.0\.0\.1:\d+\/)/.exec(err)?.[1]
  assert.ok(dashboard, `the guide prints the dashboard URL:\n${err}`)
  assert.equal(await get(dashboard), 200)
  await until(child.stdout as NodeJS.ReadableStream, () => out, /\/dns HTTP\/1\.1" 502 .*error=dns_error/, 10_000)
  const lines = [...out.split('\n'), ...err.split('\n')].filter((l) => l.trim() !== '')
  assert.deepEqual(lines.filter((l) => l.trimStart().startsWith('{')), [], 'no JSON lines')
  assert.doesNotMatch(err, /does not resolve/, 'no start-up warning about the demo\'s deliberately unresolvable name')
  assert.match(out, /"GET 127\.0\.0\.1:\d+\/ok HTTP\/1\.1" 200 /, 'text access log lines')
})

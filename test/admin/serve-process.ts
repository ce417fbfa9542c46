/**
 * `portico serve` as a child process for signal and reload tests: free loopback ports,
 * start and wait for the listeners, steady bounded load, and a kill after each test.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { afterEach } from 'node:test'
import { fileURLToPath } from 'node:url'
import { freePort } from '../helpers/ports.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const NODE = `${ROOT}node_modules/.bin/node`
const MAIN = `${ROOT}src/cli/main.ts`

export { freePort }

/** A running `portico` child process. */
export interface PorticoProcess {
  readonly child: ChildProcess
  /** Everything written to stderr so far. */
  stderr(): string
  /** Everything written to stdout so far (the access log). */
  stdout(): string
  /** Exit code and signal, once it exits. */
  readonly exited: Promise<{ code: number | null; signal: string | null }>
}

const running = new Set<ChildProcess>()
afterEach(() => {
  for (const c of running) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  running.clear()
})

/**
 * Runs `portico ARGS` (killed after the test if still running). `serve` runs one process
 * (`--workers 1`) unless the arguments say otherwise: tests of workers ask for them.
 */
export function portico(args: string[]): PorticoProcess {
  if (args[0] === 'serve' && !args.includes('--workers')) args = [...args, '--workers', '1']
  const child = spawn(NODE, [MAIN, ...args], { cwd: ROOT, env: { ...process.env, NODE_TEST_CONTEXT: '', PORTICO_LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] })
  running.add(child)
  let err = ''
  let out = ''
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d })
  child.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d })
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
  return { child, stderr: () => err, stdout: () => out, exited }
}

/** Polls `check` every 20 ms until true or `waitMs` pass. */
export async function until(what: string, check: () => boolean, waitMs = 10_000): Promise<void> {
  const deadline = Date.now() + waitMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${waitMs}ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** Starts `portico serve -c file` and waits until `ready` appears on stderr (default: the admin API line). */
export async function serve(file: string, ready = 'admin API on'): Promise<PorticoProcess> {
  const p = portico(['serve', '-c', file])
  await Promise.race([
    until(`"${ready}" on stderr`, () => p.stderr().includes(ready), 15_000),
    p.exited.then(({ code }) => { throw new Error(`portico serve exited with ${code}:\n${p.stderr()}`) }),
  ])
  return p
}

/** What a run of {@link steadyLoad} saw. */
export interface LoadResult {
  sent: number
  /** Count of each `server` name in 200 bodies. */
  servers: Map<string, number>
  /** Non-200 statuses and transport errors, with when they happened (ms since start). */
  failures: Array<{ at: number; what: string }>
}

/**
 * Sends GET `url` every `intervalMs` for `durationMs` (keep-alive, each request
 * independent) and waits for every answer.
 */
export async function steadyLoad(url: string, durationMs: number, intervalMs = 10): Promise<LoadResult> {
  const result: LoadResult = { sent: 0, servers: new Map(), failures: [] }
  const start = Date.now()
  const pending: Promise<void>[] = []
  while (Date.now() - start < durationMs) {
    result.sent++
    pending.push(fetch(url, { signal: AbortSignal.timeout(5000) }).then(async (res) => {
      const text = await res.text()
      if (res.status !== 200) return void result.failures.push({ at: Date.now() - start, what: `${res.status} ${res.headers.get('proxy-status') ?? ''}` })
      const name = (JSON.parse(text) as { server: string }).server
      result.servers.set(name, (result.servers.get(name) ?? 0) + 1)
    }, (e: Error & { cause?: { code?: string } }) => {
      result.failures.push({ at: Date.now() - start, what: e.cause?.code ?? e.message })
    }))
    await new Promise((r) => setTimeout(r, intervalMs))
  }
  await Promise.all(pending)
  return result
}

/**
 * A redis-server (Debian package) for tests: started on a free loopback port with its own
 * temporary directory and no persistence, stopped after the test.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from './ports.ts'

export { freePort }

/** Where redis-server is, or null when it is not installed (the tests that need it are skipped). */
export const REDIS_SERVER = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((p) => existsSync(p)) ?? null

/** A running redis-server. */
export interface TestRedis {
  readonly url: string
  readonly port: number
  readonly process: ChildProcess
  /** Stops it (SIGKILL: gone at once, as a crashed server) and waits for the exit. */
  kill(): Promise<void>
  /** Freezes it (SIGSTOP): connections stay open, nothing answers. */
  freeze(): void
  /** Thaws a frozen server (SIGCONT). */
  thaw(): void
}

/**
 * Starts redis-server on 127.0.0.1 and a free port, in a new temporary directory
 * (`--save '' --appendonly no`; DEBUG allowed, so a test can block it with DEBUG SLEEP),
 * resolving once it accepts connections.
 *
 * @param defer registers the stop to run after the test
 * @param port the port to listen on (a free one found beforehand); default a new free port
 */
export async function startRedis(defer: (fn: () => Promise<void>) => void, port?: number): Promise<TestRedis> {
  if (REDIS_SERVER === null) throw new Error('redis-server is not installed')
  const dir = await mkdtemp(join(tmpdir(), 'portico-redis-'))
  port ??= await freePort()
  const child = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning', '--enable-debug-command', 'yes'], { stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  let output = ''
  child.stdout?.on('data', (c: Buffer) => { output += c.toString() })
  child.stderr?.on('data', (c: Buffer) => { output += c.toString() })
  const kill = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGCONT')
      child.kill('SIGKILL')
    }
    await exited
  }
  defer(async () => {
    await kill()
    await rm(dir, { recursive: true, force: true })
  })
  // Ready once a connection is accepted and PING answered.
  const deadline = performance.now() + 5000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited: ${output}`)
    const pong = await new Promise<boolean>((resolve) => {
      const sock = net.connect(port, '127.0.0.1', () => sock.write('PING\r\n'))
      sock.once('data', (d) => { sock.destroy(); resolve(d.toString().startsWith('+PONG')) })
      sock.once('error', () => resolve(false))
    })
    if (pong) break
    if (performance.now() > deadline) throw new Error(`redis-server did not start on port ${port}: ${output}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    process: child,
    kill,
    freeze: () => { child.kill('SIGSTOP') },
    thaw: () => { child.kill('SIGCONT') },
  }
}

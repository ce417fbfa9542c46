/**
 * `portico lab`: lists the fault scenarios, or runs one on loopback until interrupted and
 * says how to point Portico, nginx or `portico doctor` at it.
 */
import type { CauseType } from '../failures/causes.ts'
import { findScenario, SCENARIOS, startLab, type LabOptions, type Scenario } from '../lab/index.ts'

/** A scenario, or the healthy upstream (no error expected). */
type Runnable = Omit<Scenario, 'expect'> & { expect: CauseType | null }

/** The healthy upstream, runnable by name next to the scenarios, to compare against. */
const HEALTHY: Runnable = { name: 'ok', mode: 'ok', expect: null, description: 'a healthy HTTP/1.1 application (/echo, /bytes/N, /delay/MS, /status/CODE, ...)' }

/**
 * Runs `portico lab`.
 * - `--list`: one line per scenario: name, expected RFC 9209 error type, description;
 * - `<scenario>`: starts it on 127.0.0.1 (`opts.port`, default a free port), prints its
 *   URL and ready-to-run `portico serve`, nginx `proxy_pass` and `portico doctor` lines,
 *   then runs until SIGINT or SIGTERM and closes every socket.
 *
 * @param out where the listing and instructions are written
 * @returns the exit code: 0 on success, 2 for a missing or unknown scenario
 * @throws the listen error when `opts.port` is taken (e.g. `EADDRINUSE`)
 */
export async function labCommand(scenario: string | undefined, opts: { list?: boolean; port?: number }, out: NodeJS.WritableStream): Promise<number> {
  if (opts.list) {
    out.write(listing())
    return 0
  }
  const chosen: Runnable | undefined = scenario === HEALTHY.name ? HEALTHY : scenario === undefined ? undefined : findScenario(scenario)
  if (!chosen) {
    const what = scenario === undefined ? 'no scenario given' : `unknown scenario "${scenario}"`
    out.write(`portico lab: ${what}; valid scenarios: ${[HEALTHY.name, ...SCENARIOS.map((s) => s.name)].join(', ')}\n`)
    out.write('run `portico lab --list` to see what each one does\n')
    return 2
  }
  const options: LabOptions = { ...chosen.options, port: opts.port ?? chosen.options?.port }
  const lab = await startLab(chosen.mode, options)
  const expect = chosen.expect === null ? 'no error' : `Proxy-Status error=${chosen.expect}`
  out.write([
    `lab scenario "${chosen.name}": ${chosen.description}`,
    `upstream: ${lab.url}`,
    `expect:   ${expect}`,
    '',
    `  portico serve --listen 127.0.0.1:8080 --to ${lab.url}`,
    `  nginx:  proxy_pass ${lab.url};`,
    `  portico doctor --upstream ${lab.url}`,
    '',
    'press Ctrl-C to stop',
    '',
  ].join('\n'))
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
      resolve()
    }
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
  })
  await lab.close()
  out.write(`lab scenario "${chosen.name}" stopped (${lab.connections} connections, ${lab.requests} requests)\n`)
  return 0
}

function listing(): string {
  const rows = [
    ...[HEALTHY, ...SCENARIOS].map((s) => [s.name, s.expect ?? 'no error', s.description]),
  ]
  const w0 = Math.max(...rows.map((r) => r[0].length))
  const w1 = Math.max(...rows.map((r) => r[1].length))
  const line = (r: string[]): string => `${r[0].padEnd(w0)}  ${r[1].padEnd(w1)}  ${r[2]}\n`
  return line(['SCENARIO', 'EXPECTED ERROR', 'WHAT THE UPSTREAM DOES']) + rows.map(line).join('')
}

/**
 * Config validation in a short-lived child process.
 *
 * Why: the YAML parser, the zod schema and its JSON-schema walk are needed only to check a
 * file, yet once imported they stay in the process for good (about 15 MB of RSS per serving
 * process, measured with bench/memory.ts). The child (./load-child.ts) loads and validates,
 * prints the config as JSON and exits; the serving process keeps only the result. Problems
 * come back as the same `ConfigError` with the same `file:line:column` lines.
 */
import type { QuickOptions } from './quick.ts'
import { ConfigError, deepFreeze, type ConfigProblem } from './problems.ts'
import type { Config } from './schema.ts'

/** What to validate: a portico.yaml, or the options of quick mode. */
export type ConfigSource = { file: string } | { quick: QuickOptions }

/** The child's answer on its standard output (one JSON document). */
export type ChildAnswer = { config: Config } | { problems: ConfigProblem[] }

/** Longest wait for the child (ms): validation takes ~0.2 s; a stuck child must not hang a start or a reload. */
const CHILD_TIMEOUT_MS = 30_000

/**
 * Loads and validates a config in a child process (see the module note).
 *
 * The config crosses as JSON, which it survives unchanged: it holds only strings, numbers
 * (durations in ms, sizes in bytes), booleans, arrays and plain objects (a test checks it).
 *
 * @returns the validated config, deep-frozen, as `loadConfigFile` / `quickConfig` return it
 * @throws {ConfigError} with every problem found (same as `loadConfigFile` / `quickConfig`)
 * @throws {Error} when the child cannot run or answers nothing usable (its stderr is in the message)
 */
export async function loadConfigIsolated(source: ConfigSource): Promise<Config> {
  const { execFile } = await import('node:child_process')
  const here = import.meta.url
  // The source form runs .ts by type stripping; the built form (dist/) is .js.
  const child = new URL(`./load-child${here.endsWith('.ts') ? '.ts' : '.js'}`, here)
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, [child.pathname, JSON.stringify(source)], { timeout: CHILD_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' }, (err, out, errOut) => {
      if (err && out === '') reject(new Error(`config validation did not run: ${err.message}${errOut ? `\n${errOut.trim()}` : ''}`))
      else resolve(out)
    })
  })
  let answer: ChildAnswer
  try {
    answer = JSON.parse(stdout) as ChildAnswer
  } catch {
    throw new Error(`config validation answered no JSON: ${stdout.slice(0, 200)}`)
  }
  if ('problems' in answer) throw new ConfigError(answer.problems)
  return deepFreeze(answer.config)
}

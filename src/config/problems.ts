/**
 * Config problems and their error, apart from the loader: the serving code refers to
 * `ConfigError` without loading the YAML parser and the schema (zod), which only
 * validation needs (see ./isolated.ts).
 */

/** One thing wrong with a config file, at a 1-based line and column (like a compiler message). */
export interface ConfigProblem {
  /** The file as the user named it, or `<command line>` for quick mode. */
  file: string
  /** 1-based line. */
  line: number
  /** 1-based column. */
  column: number
  /** What is wrong and what was expected, starting with the key path, e.g. `routes[0].upstream: unknown upstream "apii"; defined: api`. */
  message: string
}

/**
 * Thrown when a config cannot be used; carries every problem found, not only the first.
 * Test on `code`, not on the message text.
 */
export class ConfigError extends Error {
  readonly code = 'PORTICO_CONFIG_INVALID'
  /** All problems, in file order. Never empty. */
  readonly problems: ConfigProblem[]

  constructor(problems: ConfigProblem[]) {
    const n = problems.length
    super(n === 1 ? `invalid config: ${formatProblems(problems)}` : `invalid config, ${n} problems:\n${formatProblems(problems)}`)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

/**
 * Renders problems one a line as `file:line:column: message`, the format editors and
 * CI annotators recognise (gcc, nginx -t).
 */
export function formatProblems(problems: readonly ConfigProblem[]): string {
  return problems.map((p) => `${p.file}:${p.line}:${p.column}: ${p.message}`).join('\n')
}

/**
 * Freezes an object graph in place so that a validated config cannot drift after
 * validation (fastify freezes its options the same way).
 *
 * @returns `value` itself
 */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}

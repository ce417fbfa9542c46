/** Loads portico.yaml: YAML parsing, schema validation, and every problem reported as file:line:column. */
import { readFile } from 'node:fs/promises'
import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit } from 'yaml'
import type { Document, YAMLError } from 'yaml'
import type { $ZodIssue, $ZodRawIssue } from 'zod/v4/core'
import { keysAt } from './json-schema.ts'
import { configSchema } from './schema.ts'
import type { Config } from './schema.ts'
import { ConfigError, deepFreeze, type ConfigProblem } from './problems.ts'

export { ConfigError, deepFreeze, formatProblems, type ConfigProblem } from './problems.ts'

/**
 * Parses and validates portico.yaml text. Duplicate keys are errors (YAML 1.2 §3.2.1.1
 * requires unique keys; silently keeping the last one hides mistakes). Defaults are
 * applied; durations come out in ms and sizes in bytes.
 *
 * @param text the YAML source
 * @param file the name used in problems (usually the path given by the user)
 * @returns the validated config, deep-frozen
 * @throws {ConfigError} with every YAML and schema problem found. After a YAML syntax
 *   error the schema is not checked: a broken document would only add misleading problems.
 */
export function parseConfig(text: string, file: string): Config {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false, logLevel: 'error' })
  const problems: ConfigProblem[] = []
  const at = (offset: number, message: string): void => {
    const { line, col } = text.length === 0 ? { line: 1, col: 1 } : lineCounter.linePos(offset)
    problems.push({ file, line, column: col, message })
  }

  for (const e of [...doc.errors, ...doc.warnings]) at(e.pos[0], yamlMessage(doc, e))
  const syntaxBroken = doc.errors.some((e) => e.code !== 'DUPLICATE_KEY')

  if (!syntaxBroken && doc.contents === null) {
    at(0, 'the file is empty: expected a mapping with "listeners", "routes" and "upstreams"')
  } else if (!syntaxBroken) {
    let data: unknown
    try {
      data = doc.toJS({ maxAliasCount: 100 }) // bounds alias expansion ("billion laughs")
    } catch (e) {
      at(0, `invalid YAML: ${(e as Error).message}`)
    }
    if (data !== undefined) {
      const result = configSchema.safeParse(data, { error: configErrorMap, reportInput: true })
      if (result.success && problems.length === 0) return deepFreeze(result.data)
      for (const issue of result.error?.issues ?? []) {
        for (const p of issueProblems(doc, issue)) at(p.offset, p.message)
      }
    }
  }
  problems.sort((a, b) => a.line - b.line || a.column - b.column)
  throw new ConfigError(problems)
}

/**
 * Reads and validates a config file (see {@link parseConfig}).
 *
 * @throws {ConfigError} also when the file cannot be read: one problem at 1:1 naming
 *   the OS error (e.g. `ENOENT: no such file or directory`)
 */
export async function loadConfigFile(path: string): Promise<Config> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (e) {
    const err = e as NodeJS.ErrnoException
    const reason = err.code ? `${err.code}: ${err.message.replace(/^[A-Z]+: /, '').replace(/, \w+ '.*'$/, '')}` : err.message
    throw new ConfigError([{ file: path, line: 1, column: 1, message: `cannot read the config file: ${reason}` }])
  }
  return parseConfig(text, path)
}

// --- YAML errors -------------------------------------------------------------

function yamlMessage(doc: Document, e: YAMLError): string {
  if (e.code === 'DUPLICATE_KEY') {
    let key: string | undefined
    visit(doc, {
      Pair(_, pair) {
        if (isScalar(pair.key) && pair.key.range?.[0] === e.pos[0]) {
          key = String(pair.key.value)
          return visit.BREAK
        }
      },
    })
    return key === undefined ? 'duplicate key: a key may appear only once in a mapping' : `duplicate key "${key}"`
  }
  return `invalid YAML: ${e.message}`
}

// --- schema issues -> positions and messages ---------------------------------

type Path = readonly PropertyKey[]

/** Where a path leads in the YAML tree: the key and value nodes if it exists, else the deepest node on the way. */
interface Located {
  found: boolean
  keyOffset?: number
  valueOffset?: number
  deepestOffset: number
}

function locate(doc: Document, path: Path): Located {
  let node: unknown = doc.contents
  let keyOffset: number | undefined
  let deepestOffset = offsetOf(node) ?? 0
  for (const seg of path) {
    if (isAlias(node)) node = node.resolve(doc)
    let next: unknown
    if (isMap(node)) {
      // The last of duplicate keys, since that is the value toJS keeps.
      const pair = node.items.findLast((p) => isPair(p) && keyName(p.key) === String(seg))
      if (pair === undefined) return { found: false, deepestOffset }
      keyOffset = offsetOf(pair.key)
      next = pair.value
    } else if (isSeq(node) && typeof seg === 'number' && seg < node.items.length) {
      keyOffset = undefined
      next = node.items[seg]
    } else {
      return { found: false, deepestOffset }
    }
    node = next
    deepestOffset = offsetOf(node) ?? keyOffset ?? deepestOffset
  }
  // An empty value (`connect:`) has no useful range of its own: point at its key.
  const empty = node == null || (isScalar(node) && node.value === null)
  return { found: true, keyOffset, valueOffset: empty ? undefined : offsetOf(node), deepestOffset }
}

function offsetOf(node: unknown): number | undefined {
  const range = (node as { range?: [number, number, number] } | null)?.range
  return range?.[0]
}

function keyName(key: unknown): string {
  return isScalar(key) ? String(key.value) : String(key)
}

/** `routes[0].match.host`, `upstreams["my api"].timeouts` */
function formatPath(path: Path): string {
  let out = ''
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`
    else if (/^[A-Za-z_][\w-]*$/.test(String(seg))) out += out ? `.${String(seg)}` : String(seg)
    else out += `[${JSON.stringify(String(seg))}]`
  }
  return out
}

function prefixed(path: Path, message: string): string {
  return path.length ? `${formatPath(path)}: ${message}` : message
}

function issueProblems(doc: Document, issue: $ZodIssue): { offset: number; message: string }[] {
  const path = issue.path
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => {
      const where = locate(doc, [...path, key])
      return {
        offset: where.keyOffset ?? where.deepestOffset,
        message: `${prefixed([...path, key], `unknown key "${key}"`)}${suggestion(key, keysAt(path))}`,
      }
    })
  }
  const where = locate(doc, path)
  if (issue.code === 'invalid_key') {
    const reason = issue.issues[0]?.message ?? 'invalid name'
    return [{ offset: where.keyOffset ?? where.deepestOffset, message: prefixed(path.slice(0, -1), `invalid name "${String(path.at(-1))}": ${reason}`) }]
  }
  if (issue.code === 'invalid_type' && !where.found) {
    return [{ offset: where.deepestOffset, message: prefixed(path.slice(0, -1), `missing required key "${String(path.at(-1))}"`) }]
  }
  return [{ offset: where.valueOffset ?? where.keyOffset ?? where.deepestOffset, message: prefixed(path, issue.message) }]
}

/** ` (did you mean "timeouts"?)` for a near miss, else the keys allowed there. */
function suggestion(key: string, allowed: string[]): string {
  if (allowed.length === 0) return ''
  let best: string | undefined
  let bestDistance = Infinity
  for (const candidate of allowed) {
    const d = editDistance(key.toLowerCase(), candidate)
    if (d < bestDistance) [best, bestDistance] = [candidate, d]
  }
  const near = best !== undefined && (bestDistance <= Math.max(1, Math.floor(key.length / 3)) || best.startsWith(key.slice(0, -1)) && key.length >= 4)
  return near ? ` (did you mean "${best}"?)` : `; allowed: ${allowed.join(', ')}`
}

/** Levenshtein distance (insert, delete, substitute). */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    prev = row
  }
  return prev[b.length]
}

const TYPE_NAMES: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  object: 'a mapping',
  array: 'a list',
}

/** Describes a YAML value in a message: strings quoted, collections by kind. */
function show(input: unknown): string {
  if (input === undefined) return 'nothing'
  if (input === null) return 'an empty value'
  if (typeof input === 'string') return JSON.stringify(input)
  if (Array.isArray(input)) return 'a list'
  if (typeof input === 'object') return 'a mapping'
  return String(input)
}

/**
 * zod error map for issues the schema gives no message of its own (zod consults a
 * per-parse map only when the schema sets none), phrased as "what was expected, what
 * was found". Pass with `reportInput: true` so values can be quoted.
 *
 * @returns the message, or undefined to keep zod's own
 */
export function configErrorMap(issue: $ZodRawIssue): string | undefined {
  switch (issue.code) {
    case 'invalid_type':
      return `expected ${TYPE_NAMES[issue.expected] ?? issue.expected}, got ${show(issue.input)}`
    case 'invalid_value':
      return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}, got ${show(issue.input)}`
    case 'too_small':
    case 'too_big': {
      const small = issue.code === 'too_small'
      const limit = small ? issue.minimum : issue.maximum
      const bound = small ? (issue.inclusive ? 'at least' : 'more than') : (issue.inclusive ? 'at most' : 'less than')
      if (issue.origin === 'array') return `expected ${bound} ${limit} item${limit === 1 ? '' : 's'}, got ${(issue.input as unknown[]).length}`
      if (issue.origin === 'string') return `expected ${bound} ${limit} characters, got ${show(issue.input)}`
      return `expected ${bound} ${limit}, got ${show(issue.input)}`
    }
    case 'invalid_union': {
      const kinds = new Set(issue.errors.flat().filter((i) => i.code === 'invalid_type').map((i) => TYPE_NAMES[i.expected] ?? i.expected))
      return kinds.size ? `expected ${[...kinds].join(' or ')}, got ${show(issue.input)}` : `unexpected value ${show(issue.input)}`
    }
    case 'invalid_format':
      return `${show(issue.input)} is not in the expected format${issue.pattern ? ` (${issue.pattern})` : ''}`
    default:
      return undefined
  }
}

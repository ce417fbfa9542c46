/** The JSON Schema of portico.yaml as written (for editors), and the key paths it defines; run directly to print it. */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { z } from 'zod'
import { configSchema, duration, size } from './schema.ts'
import { formatDuration } from './units.ts'

/** A JSON Schema node, as far as Portico reads it (draft 2020-12). */
export interface JsonSchemaNode {
  type?: string | string[]
  properties?: Record<string, JsonSchemaNode>
  additionalProperties?: JsonSchemaNode | boolean
  items?: JsonSchemaNode
  anyOf?: JsonSchemaNode[]
  description?: string
  default?: unknown
  [key: string]: unknown
}

/**
 * The JSON Schema (draft 2020-12) of the config *input*: durations and sizes are the
 * strings written in YAML, not the ms/bytes the proxy reads. Checks that JSON Schema
 * cannot express (the route → upstream reference) are left to `portico check`.
 *
 * @param descriptions key path (as in {@link configKeyPaths}) → text shown by editors;
 *   docs/portico.schema.json takes them from docs/configuration.md ({@link referenceRows})
 * @returns a new object on each call (callers may change it)
 */
export function configJsonSchema(descriptions: ReadonlyMap<string, string> = new Map()): JsonSchemaNode {
  const schema = {
    ...z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any', target: 'draft-2020-12', override: describeUnits }),
    title: 'portico.yaml',
    description: 'Portico configuration. Durations are strings with a unit ("250ms", "5s", "2m", "1h"); sizes are "64KiB", "1MiB", "10MB" or a whole number of bytes. See docs/configuration.md.',
  } as JsonSchemaNode
  eachKey(schema, (path, node) => {
    const text = descriptions.get(path)
    // Keep the unit grammar after the key's own text: editors show one description.
    if (text) node.description = node.description ? `${text} ${node.description}` : text
  })
  return schema
}

/** One row of a reference table in docs/configuration.md. */
export interface ReferenceRow {
  /** Full key path, e.g. `upstreams.<name>.timeouts.connect`. */
  key: string
  type: string
  /** As written: a literal in backticks (`` `2s` ``) or words ("required", "none", "see below"). */
  default: string
  description: string
}

/**
 * Reads the rows of the tables under `## Reference` in docs/configuration.md: lines
 * of the form ``| `key.path` | type | default | description |``.
 */
export function referenceRows(markdown: string): ReferenceRow[] {
  const start = markdown.indexOf('\n## Reference\n')
  if (start < 0) return []
  const end = markdown.indexOf('\n## ', start + 1)
  const section = markdown.slice(start, end < 0 ? undefined : end)
  return [...section.matchAll(/^\| `([^`]+)` \| (.*?) \| (.*?) \| (.*) \|$/gm)].map((m) => ({
    key: m[1],
    type: m[2],
    default: m[3],
    description: m[4],
  }))
}

/** The duration grammar of units.ts `parseDuration`, for editors (a test keeps the two in step). */
export const DURATION_PATTERN = '^\\s*\\d+(\\.\\d+)?(ms|s|m|h)\\s*$'
/** The size grammar of units.ts `parseSize` for strings; JSON Schema patterns have no flags, hence the case classes. */
export const SIZE_PATTERN = '^\\s*\\d+(\\.\\d+)?\\s*([bB]|[kKmMgG][iI]?[bB])?\\s*$'

type OverrideContext = { zodSchema: unknown; jsonSchema: Record<string, unknown> }

/**
 * Gives durations and sizes their grammar, and their defaults in the form written in
 * YAML (`"2s"`, not the 2000 ms the parsed config holds, which zod leaves out of an
 * input schema).
 */
function describeUnits({ zodSchema, jsonSchema }: OverrideContext): void {
  const def = (zodSchema as { _zod: { def: { type: string; innerType?: unknown; defaultValue?: unknown } } })._zod.def
  if (zodSchema === duration) {
    Object.assign(jsonSchema, { pattern: DURATION_PATTERN, description: 'A duration: a number with a unit ms, s, m or h, e.g. "250ms", "5s", "2m".' })
  } else if (zodSchema === size) {
    const text = (jsonSchema.anyOf as Record<string, unknown>[] | undefined)?.find((b) => b.type === 'string')
    if (text) text.pattern = SIZE_PATTERN
    const bytes = (jsonSchema.anyOf as Record<string, unknown>[] | undefined)?.find((b) => b.type === 'number')
    if (bytes) Object.assign(bytes, { type: 'integer', minimum: 0 })
    jsonSchema.description = 'A size: a whole number of bytes, or a number with a unit B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024), e.g. "64KiB".'
  } else if (def.type === 'default' && def.innerType === duration && typeof def.defaultValue === 'number') {
    jsonSchema.default = formatDuration(def.defaultValue)
  } else if (def.type === 'default' && def.innerType === size) {
    jsonSchema.default = def.defaultValue
  }
}

// Read-only copy for the lookups below; built on first use (it only serves error messages and tests).
let shared: JsonSchemaNode | undefined

/** The object branch of a node (a union such as "URL string or `{ url, weight }`" has one). */
function objectBranch(node: JsonSchemaNode | undefined): JsonSchemaNode | undefined {
  if (node?.properties) return node
  return node?.anyOf?.find((n) => n.properties !== undefined)
}

/** The node that a list of keys/indexes leads to, or undefined when the schema has no such place. */
function nodeAt(path: readonly PropertyKey[]): JsonSchemaNode | undefined {
  let node: JsonSchemaNode | undefined = (shared ??= configJsonSchema())
  for (const seg of path) {
    if (node === undefined) return undefined
    if (typeof seg === 'number') {
      node = node.items ?? node.anyOf?.find((n) => n.items !== undefined)?.items
    } else {
      const obj = objectBranch(node)
      const extra = obj?.additionalProperties ?? node.additionalProperties
      node = obj?.properties?.[String(seg)] ?? (typeof extra === 'object' ? extra : undefined)
    }
  }
  return node
}

/**
 * The keys allowed in the mapping at `path` (zod issue path, e.g. `['upstreams', 'api', 'timeouts']`).
 *
 * @returns key names in schema order; empty when `path` leads to no fixed-key mapping
 */
export function keysAt(path: readonly PropertyKey[]): string[] {
  return Object.keys(objectBranch(nodeAt(path))?.properties ?? {})
}

/** Calls `visit` with each key's full path (see {@link configKeyPaths}) and its schema node, parents first. */
function eachKey(root: JsonSchemaNode, visit: (path: string, node: JsonSchemaNode) => void): void {
  const walk = (node: JsonSchemaNode, prefix: string): void => {
    const obj = objectBranch(node)
    for (const [key, child] of Object.entries(obj?.properties ?? {})) {
      const path = prefix ? `${prefix}.${key}` : key
      visit(path, child)
      walk(child, path)
    }
    const items = node.items ?? node.anyOf?.find((n) => n.items !== undefined)?.items
    if (items) walk(items, `${prefix}[]`)
    const extra = obj === undefined ? node.additionalProperties : undefined
    if (typeof extra === 'object') {
      visit(`${prefix}.<name>`, extra)
      walk(extra, `${prefix}.<name>`)
    }
  }
  walk(root, '')
}

/**
 * Every key the config accepts, as a full dotted path: lists as `[]`, named maps as
 * `<name>` (e.g. `upstreams.<name>.endpoints[].weight`). docs/configuration.md documents
 * exactly these.
 */
export function configKeyPaths(): string[] {
  const out: string[] = []
  eachKey((shared ??= configJsonSchema()), (path) => out.push(path))
  return out
}

/** The schema with the descriptions of docs/configuration.md, as committed in docs/portico.schema.json. */
export function documentedJsonSchema(): JsonSchemaNode {
  const markdown = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8')
  // Editors show descriptions as plain text: drop the Markdown code marks.
  const descriptions = new Map(referenceRows(markdown).map((r) => [r.key, r.description.replaceAll('`', '')]))
  return configJsonSchema(descriptions)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.stdout.write(`${JSON.stringify(documentedJsonSchema(), null, 2)}\n`)
}

/** The JSON Schema of portico.yaml as written (for editors), and the key paths it defines; run directly to print it. */
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
 * cannot express (the duration and size grammars, the route → upstream reference)
 * become plain strings there; `portico check` enforces them.
 *
 * @returns a new object on each call (callers may change it)
 */
export function configJsonSchema(): JsonSchemaNode {
  return {
    ...z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any', target: 'draft-2020-12', override: describeUnits }),
    title: 'portico.yaml',
    description: 'Portico configuration. Durations are strings with a unit ("250ms", "5s", "2m", "1h"); sizes are "64KiB", "1MiB", "10MB" or a whole number of bytes. See docs/configuration.md.',
  } as JsonSchemaNode
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

/**
 * Every key the config accepts, as a full dotted path: lists as `[]`, named maps as
 * `<name>` (e.g. `upstreams.<name>.endpoints[].weight`). docs/configuration.md documents
 * exactly these.
 */
export function configKeyPaths(): string[] {
  const out: string[] = []
  const walk = (node: JsonSchemaNode, prefix: string): void => {
    const obj = objectBranch(node)
    for (const [key, child] of Object.entries(obj?.properties ?? {})) {
      const path = prefix ? `${prefix}.${key}` : key
      out.push(path)
      walk(child, path)
    }
    const items = node.items ?? node.anyOf?.find((n) => n.items !== undefined)?.items
    if (items) walk(items, `${prefix}[]`)
    const extra = obj === undefined ? node.additionalProperties : undefined
    if (typeof extra === 'object') {
      out.push(`${prefix}.<name>`)
      walk(extra, `${prefix}.<name>`)
    }
  }
  walk((shared ??= configJsonSchema()), '')
  return out
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.stdout.write(`${JSON.stringify(configJsonSchema(), null, 2)}\n`)
}

/** The JSON Schema of portico.yaml as written (for editors), and the key paths it defines; run directly to print it. */
import { fileURLToPath } from 'node:url'
import { z } from 'zod'
import { configSchema } from './schema.ts'

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
    ...z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any', target: 'draft-2020-12' }),
    title: 'portico.yaml',
    description: 'Portico configuration. Durations are strings with a unit ("250ms", "5s", "2m", "1h"); sizes are "64KiB", "1MiB", "10MB" or a whole number of bytes. See docs/configuration.md.',
  } as JsonSchemaNode
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

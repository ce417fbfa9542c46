// docs/configuration.md and the schema in step: every key documented once, no key that does not exist, true defaults.
import { parse as parseYaml } from 'yaml'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { test } from 'node:test'
import { configKeyPaths, referenceRows } from '../../src/config/json-schema.ts'
import type { ReferenceRow } from '../../src/config/json-schema.ts'
import { parseConfig } from '../../src/config/load.ts'
import { parseDuration, parseSize } from '../../src/config/units.ts'

const docsUrl = new URL('../../docs/configuration.md', import.meta.url)
const exampleUrl = new URL('../../examples/portico.yaml', import.meta.url)

async function rows(): Promise<ReferenceRow[]> {
  return referenceRows(await readFile(docsUrl, 'utf8'))
}

test('every config key is documented once, and every documented key exists', async () => {
  const found = await rows()
  const documented = found.map((r) => r.key)
  const keys = configKeyPaths()
  assert.ok(keys.length > 30, 'the schema walk finds the keys')
  assert.deepEqual(documented.filter((k, i) => documented.indexOf(k) !== i), [], 'documented twice')
  assert.deepEqual(keys.filter((k) => !documented.includes(k)), [], 'keys missing from docs/configuration.md')
  assert.deepEqual(documented.filter((k) => !keys.includes(k)), [], 'documented keys the schema does not have')
  for (const r of found) {
    assert.ok(r.type.trim() && r.default.trim() && r.description.trim().length > 10, `${r.key}: type, default and description are filled in`)
  }
})

/** The value at a documented path in a parsed config (`[]` → first item, `<name>` → the one upstream). */
function valueAt(config: unknown, key: string): unknown {
  let v: unknown = config
  for (const seg of key.replaceAll('[]', '.0').replaceAll('<name>', 'app').split('.')) {
    if (v === undefined || v === null) return undefined
    v = (v as Record<string, unknown>)[seg]
  }
  return v
}

test('documented defaults are the defaults the schema applies', async () => {
  const config = parseConfig(`listeners: [{ address: "127.0.0.1:8080" }]
routes: [{ upstream: app }]
upstreams: { app: { endpoints: [{ url: "http://127.0.0.1:3000" }] } }
admin: {}
cache: { store: { redis: { url: "redis://127.0.0.1:6379" } } }
`, 'defaults.yaml')
  let checked = 0
  for (const r of await rows()) {
    const m = /^`([^`<]+)`$/.exec(r.default.trim())
    if (!m) continue // "required", "see below", "none", "route<index>": not a literal value
    const literal = m[1]
    const expected = r.type === 'duration' ? parseDuration(literal)
      : r.type === 'size' ? parseSize(literal)
      : r.type === 'boolean' ? literal === 'true'
      : r.type.startsWith('integer') || r.type.startsWith('number') ? Number(literal)
      : r.type.startsWith('list') ? parseYaml(literal)
      : literal
    assert.deepEqual(valueAt(config, r.key), expected, `default of ${r.key}`)
    checked++
  }
  assert.ok(checked >= 20, `checked ${checked} defaults`)
})

test('the complete example in the docs is examples/portico.yaml, and the minimal one is valid', async () => {
  const md = await readFile(docsUrl, 'utf8')
  const blocks = [...md.matchAll(/^```yaml\n([\s\S]*?)^```$/gm)].map((m) => m[1])
  assert.equal(blocks.length, 2)
  const example = await readFile(exampleUrl, 'utf8')
  const withoutHeader = example.replace(/^(#.*\n)+\n/, '')
  assert.equal(blocks[0], withoutHeader)
  assert.equal(parseConfig(blocks[1], 'minimal.yaml').routes[0].upstream, 'app')
})

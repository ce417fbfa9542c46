// The JSON Schema for editors: the committed docs/portico.schema.json is current, and key lookups work.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { test } from 'node:test'
import { promisify } from 'node:util'
import { configJsonSchema, configKeyPaths, documentedJsonSchema, DURATION_PATTERN, keysAt, SIZE_PATTERN } from '../../src/config/json-schema.ts'
import type { JsonSchemaNode } from '../../src/config/json-schema.ts'
import { parseDuration, parseSize } from '../../src/config/units.ts'

test('docs/portico.schema.json is up to date (regenerate: node src/config/json-schema.ts > docs/portico.schema.json)', async () => {
  const committed = await readFile(new URL('../../docs/portico.schema.json', import.meta.url), 'utf8')
  assert.equal(committed, `${JSON.stringify(documentedJsonSchema(), null, 2)}\n`)
})

test('running the module prints the schema', async () => {
  const script = new URL('../../src/config/json-schema.ts', import.meta.url).pathname
  const { stdout } = await promisify(execFile)(process.execPath, [script])
  assert.deepEqual(JSON.parse(stdout), documentedJsonSchema())
})

test('the schema describes the input: durations are strings, unknown keys are refused', () => {
  const s = configJsonSchema()
  assert.equal(s.$schema, 'https://json-schema.org/draft/2020-12/schema')
  assert.deepEqual(s.required, ['listeners', 'routes', 'upstreams'])
  assert.equal(s.additionalProperties, false)
  const upstream = s.properties?.upstreams?.additionalProperties
  assert.ok(upstream && typeof upstream === 'object')
  assert.equal(upstream.properties?.timeouts?.properties?.connect?.type, 'string')
})

test('keysAt and configKeyPaths follow lists, named maps and the endpoint union', () => {
  assert.deepEqual(keysAt(['upstreams', 'api', 'timeouts']), ['connect', 'response_header', 'idle', 'total'])
  assert.deepEqual(keysAt(['upstreams', 'api', 'endpoints', 3]), ['url', 'weight', 'backup'])
  assert.deepEqual(keysAt(['routes', 0, 'match']), ['host', 'path_prefix', 'path', 'path_regex', 'methods', 'headers', 'query', 'client_ip'])
  assert.deepEqual(keysAt(['no', 'such', 'place']), [])
  const paths = configKeyPaths()
  for (const p of ['listeners[].timeouts.header_read', 'upstreams.<name>', 'upstreams.<name>.endpoints[].weight', 'admin.address']) {
    assert.ok(paths.includes(p), p)
  }
})

/** Whether a parser takes the text without throwing. */
function accepts(parse: (text: string) => unknown, text: string): boolean {
  try {
    parse(text)
    return true
  } catch {
    return false
  }
}

test('duration and size patterns accept exactly what parseDuration and parseSize accept', () => {
  const durationRe = new RegExp(DURATION_PATTERN)
  for (const text of ['250ms', '5s', '1.5m', '1h', ' 3s ', '0ms', '5 sec', '5', '1d', '-1s', '5S', '', '1.s']) {
    assert.equal(durationRe.test(text), accepts(parseDuration, text), JSON.stringify(text))
  }
  const sizeRe = new RegExp(SIZE_PATTERN)
  for (const text of ['64KiB', '1mib', '10MB', '2kb', '512', '512B', '1.5GiB', '16 KiB', '16k', 'KiB', '-1', '1TiB', '', '16 kilos']) {
    assert.equal(sizeRe.test(text), accepts(parseSize, text), JSON.stringify(text))
  }
})

test('defaults appear as written in YAML', () => {
  const upstream = configJsonSchema().properties?.upstreams?.additionalProperties as JsonSchemaNode
  assert.equal(upstream.properties?.timeouts?.properties?.connect?.default, '2s')
  assert.equal(parseDuration(String(upstream.properties?.timeouts?.properties?.response_header?.default)), 30_000)
  assert.equal(upstream.properties?.max_response_header_size?.default, 16_384)
})

test('descriptions from docs/configuration.md reach the keys, before the unit grammar', () => {
  const s = configJsonSchema(new Map([['upstreams.<name>.timeouts.connect', 'TCP connect.'], ['proxy_name', 'Name.']]))
  const upstream = s.properties?.upstreams?.additionalProperties as JsonSchemaNode
  assert.match(String(upstream.properties?.timeouts?.properties?.connect?.description), /^TCP connect\. A duration: /)
  assert.equal(s.properties?.proxy_name?.description, 'Name.')
  const documented = documentedJsonSchema()
  assert.match(String(documented.properties?.listeners?.description), /at least one/)
})

// Quick mode: `portico serve --listen ADDR --to URL` without a file, validated by the same schema.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ConfigError } from '../../src/config/load.ts'
import { quickConfig } from '../../src/config/quick.ts'

test('one listener, a catch-all route "default" to upstream "default" with the endpoints, defaults elsewhere', () => {
  const c = quickConfig({ listen: '127.0.0.1:8080', to: ['http://127.0.0.1:3000', 'https://127.0.0.1:3443'] })
  assert.equal(c.listeners.length, 1)
  assert.equal(c.listeners[0].address, '127.0.0.1:8080')
  assert.equal(c.routes.length, 1)
  assert.equal(c.routes[0].name, 'default')
  assert.equal(c.routes[0].upstream, 'default')
  assert.deepEqual(c.routes[0].match, { path_prefix: '/' })
  assert.deepEqual(Object.keys(c.upstreams), ['default'])
  assert.deepEqual(c.upstreams.default.endpoints, [
    { url: 'http://127.0.0.1:3000', weight: 1, backup: false },
    { url: 'https://127.0.0.1:3443', weight: 1, backup: false },
  ])
  assert.equal(c.upstreams.default.timeouts.connect, 2000)
  assert.equal(c.access_log.format, 'json')
  assert.equal(c.expose_error_details, false)
  assert.ok(Object.isFrozen(c.upstreams.default.endpoints))
})

test('options for error details and log format are carried through', () => {
  const c = quickConfig({ listen: '[::1]:0', to: ['http://localhost:3000'], exposeErrorDetails: true, logFormat: 'text' })
  assert.equal(c.expose_error_details, true)
  assert.equal(c.access_log.format, 'text')
  assert.equal(c.listeners[0].address, '[::1]:0')
})

test('a bad --to URL and a bad --listen give clear problems at <command line>:1:1', () => {
  assert.throws(
    () => quickConfig({ listen: 'localhost', to: ['http://127.0.0.1:3000', 'http://127.0.0.1:3000/app'] }),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError)
      assert.equal(e.code, 'PORTICO_CONFIG_INVALID')
      assert.deepEqual(e.problems.map((p) => `${p.file}:${p.line}:${p.column}: ${p.message}`), [
        '<command line>:1:1: --listen localhost: expected "host:port", e.g. "127.0.0.1:8080"',
        '<command line>:1:1: --to http://127.0.0.1:3000/app: expected an endpoint URL "http://host:port" or "https://host:port" with no path, or "unix:/path/to/app.sock"',
      ])
      return true
    },
  )
})

test('no --to at all is refused', () => {
  assert.throws(() => quickConfig({ listen: '127.0.0.1:0', to: [] }), (e: unknown) => {
    assert.ok(e instanceof ConfigError)
    assert.equal(e.problems.length, 1)
    assert.match(e.problems[0].message, /^--to: an upstream needs at least one endpoint$/)
    return true
  })
})

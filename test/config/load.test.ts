// Config loading: every problem at its exact file:line:column, defaults, units, freezing.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { ConfigError, formatProblems, loadConfigFile, parseConfig } from '../../src/config/load.ts'
import type { ConfigProblem } from '../../src/config/load.ts'
import { useTempDir } from './temp-dir.ts'

const FILE = 'portico.yaml'

/** The problems parseConfig throws for `text`, as `line:column: message` strings. */
function problemsOf(text: string): ConfigProblem[] {
  try {
    parseConfig(text, FILE)
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${String(e)}`)
    assert.equal(e.code, 'PORTICO_CONFIG_INVALID')
    assert.ok(e.problems.length > 0)
    return e.problems
  }
  assert.fail('expected the config to be rejected')
}

function onlyProblem(text: string): ConfigProblem {
  const problems = problemsOf(text)
  assert.equal(problems.length, 1, formatProblems(problems))
  return problems[0]
}

const VALID = `listeners:
  - address: 127.0.0.1:8080
routes:
  - upstream: api
upstreams:
  api:
    endpoints: ["http://127.0.0.1:3000"]
`

describe('parseConfig: problems at file:line:column', () => {
  test('unknown key, pointing at the key, with a suggestion', () => {
    const p = onlyProblem(VALID + '    timeout: { connect: 1s }\n')
    assert.deepEqual([p.file, p.line, p.column], [FILE, 8, 5])
    assert.equal(p.message, 'upstreams.api.timeout: unknown key "timeout" (did you mean "timeouts"?)')
  })

  test('unknown key with no near miss lists the allowed keys', () => {
    const p = onlyProblem(VALID.replace('  - address: 127.0.0.1:8080', '  - address: 127.0.0.1:8080\n    colour: blue'))
    assert.deepEqual([p.line, p.column], [3, 5])
    assert.match(p.message, /^listeners\[0\]\.colour: unknown key "colour"; allowed: address, timeouts, max_header_size, max_request_body_size, max_connections, deny_methods, encoded_slashes, access, tls, http2, redirect_to_https$/)
  })

  test('wrong type, pointing at the value', () => {
    const p = onlyProblem(VALID.replace('  - upstream: api', '  - upstream: api\n    preserve_host: "yes"'))
    assert.deepEqual([p.line, p.column], [5, 20])
    assert.equal(p.message, 'routes[0].preserve_host: expected true or false, got "yes"')
  })

  test('bad duration', () => {
    const p = onlyProblem(VALID + '    timeouts:\n      connect: 5 sec\n')
    assert.deepEqual([p.line, p.column], [9, 16])
    assert.equal(p.message, 'upstreams.api.timeouts.connect: invalid duration "5 sec": expected a number with a unit, e.g. "250ms", "5s", "2m", "1h"')
  })

  test('bad size', () => {
    const p = onlyProblem(VALID + '    max_response_header_size: 16 kilos\n')
    assert.deepEqual([p.line, p.column], [8, 31])
    assert.match(p.message, /^upstreams\.api\.max_response_header_size: invalid size "16 kilos"/)
  })

  test('unknown upstream referenced by a route', () => {
    const p = onlyProblem(VALID.replace('upstream: api', 'upstream: apii'))
    assert.deepEqual([p.line, p.column], [4, 15])
    assert.equal(p.message, 'routes[0].upstream: unknown upstream "apii"; defined: api')
  })

  test('a route cannot name an inherited property as its upstream', () => {
    const p = onlyProblem(VALID.replace('upstream: api', 'upstream: toString'))
    assert.match(p.message, /unknown upstream "toString"/)
  })

  test('duplicate YAML key', () => {
    const p = onlyProblem(VALID + 'routes:\n  - upstream: api\n')
    assert.deepEqual([p.line, p.column], [8, 1])
    assert.equal(p.message, 'duplicate key "routes"')
  })

  test('YAML syntax error', () => {
    const p = onlyProblem('listeners:\n  - address: 127.0.0.1:8080\nroutes: [ { upstream: api }\nupstreams: {}\n')
    assert.equal(p.line, 4)
    assert.equal(p.column, 1)
    assert.match(p.message, /^invalid YAML: /)
  })

  test('missing required key, pointing at the mapping that lacks it', () => {
    const p = onlyProblem(VALID.replace('  - upstream: api', '  - name: web'))
    assert.deepEqual([p.line, p.column], [4, 5])
    assert.equal(p.message, 'routes[0]: missing required key "upstream"')
  })

  test('bad enum value lists the choices', () => {
    const p = onlyProblem(VALID + '    load_balancing: fastest\n')
    assert.deepEqual([p.line, p.column], [8, 21])
    assert.equal(p.message, 'upstreams.api.load_balancing: expected one of "round_robin", "least_request", "random", got "fastest"')
  })

  test('bad endpoint URL', () => {
    const p = onlyProblem(VALID.replace('"http://127.0.0.1:3000"', '"http://127.0.0.1:3000", "tcp://10.0.0.1:80"'))
    assert.deepEqual([p.line, p.column], [7, 42])
    assert.match(p.message, /^upstreams\.api\.endpoints\[1\]: expected an endpoint URL/)
  })

  test('dns: resolvers must be IP addresses with an optional port, and min_ttl not above max_ttl', () => {
    const problems = problemsOf(VALID + '    dns: { min_ttl: 10m, max_ttl: 1m, resolvers: ["ns.internal", "10.0.0.2:70000", "10.0.0.2", "127.0.0.1:5353", "[::1]:53", "::1"] }\n')
    assert.deepEqual(problems.map((p) => p.message.replace(/:.*/, '')), ['upstreams.api.dns.min_ttl', 'upstreams.api.dns.resolvers[0]', 'upstreams.api.dns.resolvers[1]'])
    assert.match(problems[0].message, /min_ttl is longer than max_ttl/)
    assert.match(problems[1].message, /expected a DNS server IP address with an optional port/)
  })

  test('empty file and comment-only file', () => {
    for (const text of ['', '# nothing yet\n']) {
      const p = onlyProblem(text)
      assert.deepEqual([p.line, p.column], [1, 1])
      assert.match(p.message, /empty/)
    }
  })

  test('top level that is not a mapping', () => {
    const p = onlyProblem('- a\n- b\n')
    assert.deepEqual([p.line, p.column], [1, 1])
    assert.equal(p.message, 'expected a mapping, got a list')
  })

  test('several problems are reported at once, in file order', () => {
    const text = `listeners:
  - address: nowhere
routes:
  - upstream: web
    strip_prefix: 1
upstreams:
  api:
    endpoints: []
    retries: { attempts: 0 }
    keepalive: { idle_timeout: forever }
`
    const lines = problemsOf(text).map((p) => `${p.line}:${p.column}: ${p.message}`)
    assert.deepEqual(lines, [
      '2:14: listeners[0].address: expected "host:port", e.g. "127.0.0.1:8080"',
      '4:15: routes[0].upstream: unknown upstream "web"; defined: api',
      '5:19: routes[0].strip_prefix: expected true or false, got 1',
      '8:16: upstreams.api.endpoints: an upstream needs at least one endpoint',
      '9:26: upstreams.api.retries.attempts: expected at least 1, got 0',
      '10:32: upstreams.api.keepalive.idle_timeout: invalid duration "forever": expected a number with a unit, e.g. "250ms", "5s", "2m", "1h"',
    ])
  })

  test('a duplicate key is reported together with schema problems', () => {
    const lines = problemsOf(VALID + 'proxy_name: a\nproxy_name: "b c"\n').map((p) => `${p.line}:${p.column}: ${p.message}`)
    assert.equal(lines.length, 2)
    assert.equal(lines[0], '9:1: duplicate key "proxy_name"')
    assert.match(lines[1], /^9:13: proxy_name: /)
  })

  test('ConfigError message lists every problem', () => {
    try {
      parseConfig(VALID.replace('upstream: api', 'upstream: nope') + 'extra: 1\n', FILE)
      assert.fail('expected a ConfigError')
    } catch (e) {
      assert.ok(e instanceof ConfigError)
      assert.equal(e.problems.length, 2)
      assert.match(e.message, /portico\.yaml:4:15: routes\[0\]\.upstream/)
      assert.match(e.message, /portico\.yaml:8:1: extra: unknown key "extra"/)
    }
  })
})

describe('parseConfig: valid configs', () => {
  test('defaults are applied', () => {
    const c = parseConfig(VALID, FILE)
    const api = c.upstreams.api
    assert.deepEqual(api.endpoints, [{ url: 'http://127.0.0.1:3000', weight: 1, backup: false }])
    assert.equal(api.load_balancing, 'round_robin')
    assert.deepEqual(api.timeouts, { connect: 2000, response_header: 30_000, idle: 60_000 })
    assert.deepEqual(api.keepalive, { idle_timeout: 4000 })
    assert.deepEqual(api.limits, { max_connections: 256, max_pending: 1024, queue_timeout: 1000 })
    assert.equal(api.retries.attempts, 2)
    assert.equal(api.max_response_header_size, 16 * 1024)
    assert.deepEqual(c.routes[0].match, { path_prefix: '/' })
    assert.equal(c.routes[0].preserve_host, true)
    assert.equal(c.routes[0].strip_prefix, false)
    assert.deepEqual(c.listeners[0].timeouts, { header_read: 10_000, keepalive: 75_000, body_idle: 60_000, send: 60_000 })
    assert.deepEqual(c.access_log, { format: 'json', path: '-' })
    assert.equal(c.admin, undefined)
    assert.equal(c.expose_error_details, false)
    assert.equal(c.proxy_name, 'portico')
  })

  test('durations come out in ms and sizes in bytes', () => {
    const c = parseConfig(VALID + `    timeouts: { connect: 250ms, response_header: 1.5s, idle: 2m, total: 1h }
    keepalive: { idle_timeout: 3s }
    max_response_header_size: 64KiB
`, FILE)
    assert.deepEqual(c.upstreams.api.timeouts, { connect: 250, response_header: 1500, idle: 120_000, total: 3_600_000 })
    assert.equal(c.upstreams.api.keepalive.idle_timeout, 3000)
    assert.equal(c.upstreams.api.max_response_header_size, 65_536)
    assert.deepEqual(c.upstreams.api.dns, { min_ttl: 1000, max_ttl: 300_000, grace: 300_000 }, 'dns defaults; resolvers: the system\'s')
    const r = parseConfig(VALID + '    dns: { min_ttl: 250ms, max_ttl: 2m, grace: 30s, resolvers: ["127.0.0.1:5353"] }\n', FILE)
    assert.deepEqual(r.upstreams.api.dns, { min_ttl: 250, max_ttl: 120_000, grace: 30_000, resolvers: ['127.0.0.1:5353'] })
    const d = parseConfig(VALID.replace('  - address: 127.0.0.1:8080', '  - address: 127.0.0.1:8080\n    max_header_size: 8192'), FILE)
    assert.equal(d.listeners[0].max_header_size, 8192)
  })

  test('the result is deep-frozen', () => {
    const c = parseConfig(VALID, FILE)
    assert.ok(Object.isFrozen(c))
    assert.ok(Object.isFrozen(c.upstreams.api.endpoints[0]))
    assert.throws(() => {
      ;(c.upstreams.api.timeouts as { connect: number }).connect = 1
    }, TypeError)
    assert.throws(() => {
      ;(c.routes as unknown[]).push({})
    }, TypeError)
  })

  test('YAML anchors and aliases are resolved', () => {
    const c = parseConfig(`listeners:
  - address: 127.0.0.1:8080
routes:
  - upstream: a
  - upstream: b
    match: { path_prefix: /b }
upstreams:
  a: &pool
    endpoints: ["http://127.0.0.1:3000"]
  b: *pool
`, FILE)
    assert.deepEqual(Object.keys(c.upstreams), ['a', 'b'])
    assert.equal(c.upstreams.b.endpoints[0].url, 'http://127.0.0.1:3000')
  })
})

describe('loadConfigFile', () => {
  const dir = useTempDir('portico-config-')

  test('reads and validates a file, naming it in problems', async () => {
    const good = join(dir(), 'good.yaml')
    await writeFile(good, VALID)
    assert.equal((await loadConfigFile(good)).upstreams.api.endpoints.length, 1)

    const bad = join(dir(), 'bad.yaml')
    await writeFile(bad, VALID.replace('upstream: api', 'upstream: apii'))
    await assert.rejects(loadConfigFile(bad), (e: unknown) => {
      assert.ok(e instanceof ConfigError)
      assert.equal(formatProblems(e.problems), `${bad}:4:15: routes[0].upstream: unknown upstream "apii"; defined: api`)
      return true
    })
  })

  test('an unreadable file is a problem at 1:1 naming the OS error', async () => {
    const missing = join(dir(), 'missing.yaml')
    await assert.rejects(loadConfigFile(missing), (e: unknown) => {
      assert.ok(e instanceof ConfigError)
      assert.equal(e.problems.length, 1)
      assert.deepEqual([e.problems[0].file, e.problems[0].line, e.problems[0].column], [missing, 1, 1])
      assert.match(e.problems[0].message, /ENOENT/)
      return true
    })
    await assert.rejects(loadConfigFile(dir()), (e: unknown) => e instanceof ConfigError && /EISDIR/.test(e.problems[0].message))
  })
})

test('formatProblems renders one file:line:column line per problem', () => {
  assert.equal(
    formatProblems([
      { file: 'a.yaml', line: 3, column: 7, message: 'one' },
      { file: 'a.yaml', line: 10, column: 1, message: 'two' },
    ]),
    'a.yaml:3:7: one\na.yaml:10:1: two',
  )
  assert.equal(formatProblems([]), '')
})

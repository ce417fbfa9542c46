// Every Portico key and nginx directive the cause table names exists: keys in the config
// schema, directives in nginx and in the block the text puts them in.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CAUSES, CAUSE_IDS, type CauseId } from '../../src/failures/causes.ts'
import { configKeyPaths } from '../../src/config/json-schema.ts'
import { NGINX_DIRECTIVES } from '../doctor/vocabulary.ts'

/**
 * The nginx directives the fixes may name, with the contexts nginx's documentation gives
 * them: the list doctor's own fixes are checked against (test/doctor/vocabulary.ts).
 * `server` there is the upstream module's `server ADDRESS;`.
 */
const NGINX_CONTEXTS: Readonly<Record<string, readonly string[]>> = NGINX_DIRECTIVES

/** Parameters of an upstream `server` line, which prose may name without a block. */
const NGINX_SERVER_PARAMETERS = new Set(['max_fails', 'fail_timeout', 'backup', 'resolve', 'weight'])

/** Commands a fix may quote in backticks (not keys, not directives). */
const COMMANDS = new Set(['dig', 'nginx', 'portico', 'ss', 'sysctl'])

/** Every fix text of the table, with where it comes from. */
function fixes(kind: 'nginx' | 'portico'): Array<{ where: string; text: string }> {
  const out: Array<{ where: string; text: string }> = []
  for (const id of CAUSE_IDS) {
    out.push({ where: `${id} ${kind} fix`, text: CAUSES[id].fix[kind] })
    if (kind === 'nginx') {
      for (const [d, text] of Object.entries(CAUSES[id].fix.nginxDetails ?? {})) out.push({ where: `${id} nginx fix for ${d}`, text })
    }
  }
  return out
}

/** The backticked spans of a text, each with the text that follows it; block names (`` in the `http` block ``) are not spans. */
function spans(text: string): Array<{ code: string; after: string }> {
  return [...text.matchAll(/`([^`]+)`/g)]
    .map((m) => ({ code: m[1], before: text.slice(0, m.index), after: text.slice((m.index ?? 0) + m[0].length) }))
    .filter((s) => !(s.before.endsWith(' in the ') && s.after.startsWith(' block')))
}

/** The text with its backticked spans removed. */
function prose(text: string): string {
  return text.replace(/`[^`]*`/g, ' ')
}

/** Lower-case words with an underscore or a dot between words: how keys and directives look in prose. */
function keyLikeWords(text: string): string[] {
  return [...text.matchAll(/(?<![\w/.$-])[a-z][a-z0-9]+(?:_[a-z0-9]+)*(?:\[\])?(?:\.[a-z][a-z0-9_]+(?:\[\])?)*(?![\w-])/g)]
    .map((m) => m[0]).filter((w) => w.includes('_') || w.includes('.'))
}

/** One use of nginx directives in a fix: the statements of a span and the block the text puts them in. */
interface NginxUse {
  where: string
  statements: string[]
  block: string
}

/**
 * Reads the directive uses of an nginx fix. A span is a command, or directive statements
 * (`name args;` ...) followed by `` in the `BLOCK` block `` (`BLOCK` may carry a name:
 * `upstream app`) or `in the main context`.
 */
function nginxUses(where: string, text: string): NginxUse[] {
  const uses: NginxUse[] = []
  for (const { code, after } of spans(text)) {
    if (COMMANDS.has(code.split(' ')[0])) continue
    assert.ok(code.trimEnd().endsWith(';'), `${where}: \`${code}\` is neither a command nor directive statements ending in ";"`)
    const statements = code.split(';').map((s) => s.trim()).filter((s) => s.length > 0)
    const m = /^ in the `(\w+)[^`]*` block/.exec(after) ?? /^ in the (main) context/.exec(after)
    assert.ok(m, `${where}: \`${code}\` does not say its block (" in the \`location\` block"): "${after.slice(0, 40)}"`)
    uses.push({ where, statements, block: m[1] })
  }
  return uses
}

test('the nginx directive list: every name is a directive with at least one context', () => {
  for (const [name, contexts] of Object.entries(NGINX_CONTEXTS)) {
    assert.match(name, /^[a-z][a-z0-9_]*$/)
    assert.ok(contexts.length > 0, name)
  }
})

test('every nginx directive a fix names is a real directive, given with a block it is valid in', () => {
  let checked = 0
  for (const { where, text } of fixes('nginx')) {
    for (const use of nginxUses(where, text)) {
      for (const s of use.statements) {
        const name = s.split(/\s+/)[0]
        const contexts = NGINX_CONTEXTS[name]
        assert.ok(contexts, `${where}: "${name}" is not a known nginx directive`)
        assert.ok(contexts.includes(use.block), `${where}: "${name}" is not valid in the ${use.block} block (nginx allows: ${contexts.join(', ')})`)
        checked++
      }
    }
    for (const w of keyLikeWords(prose(text)).filter((w) => !w.includes('.'))) {
      assert.ok(w in NGINX_CONTEXTS || NGINX_SERVER_PARAMETERS.has(w), `${where}: "${w}" is neither an nginx directive nor a server parameter`)
    }
  }
  assert.ok(checked >= 30, `only ${checked} directive uses found: the parser lost some`)
})

test('the nginx check catches a directive in the wrong block, a missing block and an unknown directive', () => {
  const check = (text: string) => {
    for (const use of nginxUses('sample', text)) {
      for (const s of use.statements) {
        const name = s.split(/\s+/)[0]
        assert.ok(NGINX_CONTEXTS[name]?.includes(use.block), `${name} in ${use.block}`)
      }
    }
  }
  assert.doesNotThrow(() => check('Set `proxy_read_timeout 60s;` in the `location` block.'))
  assert.doesNotThrow(() => check('Set `keepalive_timeout 4s;` in the `upstream app` block and run `nginx -t`.'))
  assert.throws(() => check('Raise `worker_connections 4096;` in the `http` block.'), /worker_connections in http/)
  assert.throws(() => check('Raise `proxy_read_timeout 60s;` for slow pages.'), /does not say its block/)
  assert.throws(() => check('Set `proxy_read_timeouts 60s;` in the `location` block.'), /proxy_read_timeouts in location/)
  assert.throws(() => check('Raise `proxy_read_timeout` in the `location` block.'), /neither a command nor directive statements/)
})

test('every Portico key a fix, hint or title names is a key of the config schema', () => {
  const keys = new Set(configKeyPaths())
  assert.ok(keys.has('upstreams.<name>.limits.max_connections'), 'the schema walk finds nested keys')
  let checked = 0
  const namesKey = (word: string) => [...keys].some((k) => k === word || k.endsWith(`.${word}`))
  for (const { where, text } of fixes('portico')) {
    for (const { code } of spans(text)) {
      if (COMMANDS.has(code.split(' ')[0])) continue
      assert.ok(keys.has(code), `${where}: \`${code}\` is not a key path of portico.yaml (src/config/schema.ts)`)
      checked++
    }
    for (const w of keyLikeWords(prose(text))) assert.ok(namesKey(w), `${where}: "${w}" names no config key`)
  }
  for (const id of CAUSE_IDS) {
    for (const [what, text] of [['hint', CAUSES[id].hint], ['title', CAUSES[id].title]] as const) {
      for (const w of keyLikeWords(prose(text))) {
        assert.ok(namesKey(w), `${id} ${what}: "${w}" names no config key`)
        checked++
      }
    }
  }
  assert.ok(checked >= 25, `only ${checked} keys found: the parser lost some`)
  // The key the fixes once named for the connection limit does not exist.
  assert.ok(!keys.has('upstreams.<name>.keepalive.max_connections'))
  assert.ok(!namesKey('keepalive.max_connections'))
})

test('every row has a Portico and an nginx fix, and each names something to change or check', () => {
  for (const id of CAUSE_IDS) {
    const { fix } = CAUSES[id]
    assert.ok(fix.portico.length > 20 && fix.nginx.length > 20, id)
    assert.ok(!fix.portico.includes('nginx') || id === 'proxy_configuration_error', `${id}: the Portico fix speaks of nginx`)
  }
  const expected: Partial<Record<CauseId, RegExp>> = {
    connection_limit_reached: /`upstreams\.<name>\.limits\.max_connections`/,
    'http_request_denied.body_too_large': /`listeners\[\]\.max_request_body_size`/,
    'http_request_error.request_header_too_large': /`listeners\[\]\.max_header_size`/,
    http_response_timeout: /`upstreams\.<name>\.timeouts\.response_header`/,
  }
  for (const [id, re] of Object.entries(expected)) assert.match(CAUSES[id as CauseId].fix.portico, re, id)
  assert.match(CAUSES['http_request_denied.body_too_large'].fix.nginx, /`client_max_body_size \S+;`/)
  assert.match(CAUSES['http_request_denied.rate_limited'].fix.nginx, /`limit_req_status 429;`/)
})

const NGINX = '/usr/sbin/nginx'
const CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt'

/** Example values for the placeholders of the fixes, so that `nginx -t` can read them. */
const PLACEHOLDERS: Array<[RegExp, string]> = [
  [/<DNS IP 2>/g, '127.0.0.2'], [/<DNS IP>/g, '127.0.0.1'], [/BACKUP_ADDRESS/g, '127.0.0.2:9'], [/\bADDRESS\b/g, '127.0.0.1:9'],
  [/NAME:PORT|HOST:PORT/g, '127.0.0.1:9'], [/\bHOST\b/g, 'app.example'], [/\bZONE\b/g, 'z'], [/\/path\/ca\.pem/g, CA_BUNDLE],
  [/\/var\/log\/nginx\/error\.log/g, 'logs/fix-error.log'],
]

test('nginx itself accepts every directive of the fixes in the block given (nginx -t)', { skip: existsSync(NGINX) && existsSync(CA_BUNDLE) ? false : `needs ${NGINX} and ${CA_BUNDLE}` }, (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-fixes-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  mkdirSync(join(dir, 'logs'), { recursive: true })
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((k) => `${k}_temp_path ${join(dir, k)};`).join('\n')
  let tested = 0
  for (const { where, text } of fixes('nginx')) {
    for (const use of nginxUses(where, text)) {
      let code = use.statements.map((s) => `${s};`).join('\n')
      // The `resolve` parameter of an upstream server is from nginx 1.27.3; the installed one may be older.
      if (/\bresolve;/.test(code)) continue
      // A connection-limit zone is its own kind of zone (`c`), apart from the request-rate one (`z`).
      code = code.replace(/(limit_conn_zone[^;]*zone=)ZONE/g, '$1c').replace(/limit_conn ZONE/g, 'limit_conn c')
      for (const [re, value] of PLACEHOLDERS) code = code.replace(re, value)
      const put = (block: string) => (use.block === block ? code : '')
      const conf = `pid ${join(dir, 'nginx.pid')};\nerror_log ${join(dir, 'error.log')};\n${put('main')}
events { ${put('events')} }
http {
  access_log off;
  ${temp}
  ${code.includes('limit_req_zone') ? '' : 'limit_req_zone $binary_remote_addr zone=z:1m rate=1r/s;'}
  ${code.includes('limit_conn_zone') ? '' : 'limit_conn_zone $binary_remote_addr zone=c:1m;'}
  ${put('http')}
  upstream u { server 127.0.0.1:9; ${put('upstream')} }
  server { listen 127.0.0.1:9; ${put('server')} location / { ${put('location')} } }
}
`
      const file = join(dir, 'nginx.conf')
      writeFileSync(file, conf)
      const r = spawnSync(NGINX, ['-t', '-q', '-p', dir, '-c', file], { encoding: 'utf8', timeout: 10_000 })
      assert.equal(r.status, 0, `${where}: nginx -t rejects \`${use.statements.join('; ')};\` in the ${use.block} block:\n${r.stderr}${r.stdout}`)
      tested++
    }
  }
  assert.ok(tested >= 20, `only ${tested} uses tested`)
  // The check can fail: a directive in a block nginx does not allow.
  writeFileSync(join(dir, 'bad.conf'), `pid ${join(dir, 'nginx.pid')};\nerror_log ${join(dir, 'error.log')};\nevents { }\nhttp { worker_connections 64; }\n`)
  const bad = spawnSync(NGINX, ['-t', '-q', '-p', dir, '-c', join(dir, 'bad.conf')], { encoding: 'utf8', timeout: 10_000 })
  assert.notEqual(bad.status, 0)
  assert.match(bad.stderr, /not allowed here/)
})

test('doctor reads a log group\'s words from the row of its status: a 400 http_request_error is not the 408 body timeout', async () => {
  const { checkLogs } = await import('../../src/doctor/logs/index.ts')
  type Summary = Parameters<typeof checkLogs>[0]
  const group = (byStatus: Record<string, number>) => ({
    cause: 'http_request_error', count: 3, byEndpoint: {}, byUpstream: { api: 3 }, byStatus, byProtocol: {}, byDetail: {},
    firstSeen: new Date(0), lastSeen: new Date(0), peakMinute: '1970-01-01T00:00', peakCount: 3, samples: [],
  })
  const run = (byStatus: Record<string, number>) => checkLogs({ path: 'x.log', failures: 3, causes: [group(byStatus)], bursts: [] } as unknown as Summary, { system: 'portico' })[0]
  const timeout = run({ 408: 3 })
  assert.ok(timeout.title.startsWith(CAUSES['http_request_error.client_body_timeout'].title), timeout.title)
  assert.match(timeout.fix, /`listeners\[\]\.timeouts\.body_idle`/)
  const header = run({ 431: 2, 408: 1 })
  assert.ok(header.title.startsWith(CAUSES['http_request_error.request_header_too_large'].title), header.title)
  assert.match(header.fix, /`listeners\[\]\.max_header_size`/)
})

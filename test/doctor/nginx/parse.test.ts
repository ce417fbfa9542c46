// Tests of the nginx configuration tokenizer, parser and include expansion.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseNginxConfig, tokenize, NginxParseError } from '../../../src/doctor/nginx/parse.ts'
import type { NginxDirective } from '../../../src/doctor/nginx/parse.ts'

const SITE = resolve(import.meta.dirname, '../../fixtures/nginx/site')

function find(ds: NginxDirective[], name: string, arg0?: string): NginxDirective | undefined {
  for (const d of ds) {
    if (d.name === name && (arg0 === undefined || d.args[0] === arg0)) return d
    const inner = d.block ? find(d.block, name, arg0) : undefined
    if (inner) return inner
  }
  return undefined
}

/** Writes files into a fresh temporary directory and removes it after the test. */
async function withFiles(t: { after: (fn: () => Promise<void>) => void }, files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'portico-nginx-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  for (const [name, text] of Object.entries(files)) {
    await mkdir(join(dir, name, '..'), { recursive: true })
    await writeFile(join(dir, name), text)
  }
  return dir
}

async function parseError(dir: string): Promise<NginxParseError> {
  try {
    await parseNginxConfig(join(dir, 'nginx.conf'))
  } catch (e) {
    assert.ok(e instanceof NginxParseError, String(e))
    return e
  }
  assert.fail('expected an NginxParseError')
}

test('tokenize: comments, quoted strings with escapes and ; { inside, ${var}', () => {
  const toks = tokenize('a "x; {y} \\"q\\"" \'it\\\'s\' # comment ; {\nb ${host}x$y;', 'f')
  assert.deepEqual(toks.map((t) => t.text), ['a', 'x; {y} "q"', "it's", 'b', '${host}x$y', ';'])
  assert.equal(toks[3].line, 2)
  assert.equal(toks[1].quoted, true)
})

test('tokenize: # inside a word is not a comment', () => {
  assert.deepEqual(tokenize('return 200 a#b;', 'f').map((t) => t.text), ['return', '200', 'a#b', ';'])
})

test('parses the fixture with glob includes, in sorted order, keeping file and line', async () => {
  const tree = await parseNginxConfig(join(SITE, 'nginx.conf'))
  assert.deepEqual(tree.files.map((f) => f.slice(SITE.length + 1)), [
    'nginx.conf', 'conf.d/upstreams.conf', 'sites-enabled/default', 'snippets/proxy.conf', 'sites-enabled/dynamic',
  ])
  const up = find(tree.directives, 'upstream', 'legacy')
  assert.equal(up?.file, join(SITE, 'conf.d/upstreams.conf'))
  assert.equal(up?.line, 8)
  const note = find(tree.directives, 'add_header', 'X-Note')
  assert.equal(note?.args[1], 'semi; brace { quote " end')
  const timeout = find(tree.directives, 'proxy_read_timeout', '1m 30s')
  assert.equal(timeout?.line, 9)
  const snippet = find(tree.directives, 'proxy_set_header', 'Host')
  assert.equal(snippet?.file, join(SITE, 'snippets/proxy.conf'))
  assert.equal(find(tree.directives, 'if')?.args.join(' '), '($http_x_debug = 1 )')
})

test('include: relative to the including file when not found beside the main file; empty glob is fine', async (t) => {
  const dir = await withFiles(t, {
    'nginx.conf': 'events {}\nhttp { include sub/site.conf; include none.d/*.conf; }\n',
    'sub/site.conf': 'include inner.conf;\n',
    'sub/inner.conf': 'server { listen 8080; }\n',
  })
  const tree = await parseNginxConfig(join(dir, 'nginx.conf'))
  assert.equal(find(tree.directives, 'listen')?.args[0], '8080')
  assert.equal(find(tree.directives, 'listen')?.file, join(dir, 'sub/inner.conf'))
})

const errors: [string, string, number, RegExp][] = [
  ['unbalanced open brace', 'events {}\nhttp {\n  server {\n}\n', 4, /unexpected end of file, expecting "}"/],
  ['unbalanced close brace', 'events {}\n}\n', 2, /unexpected "}"/],
  ['unterminated string', 'events {}\nhttp {\n  add_header X "abc;\n}\n', 3, /unterminated double-quoted string/],
  ['missing semicolon', 'events {}\nhttp {\n  proxy_read_timeout 5s\n}\n', 4, /not terminated by ";"/],
  ['missing semicolon at end of file', 'worker_processes 1', 1, /unexpected end of file/],
  ['include not found', 'events {}\n\ninclude missing.conf;\n', 3, /include "missing.conf" not found/],
  ['text after a quote', 'events {}\nerror_log "a"b;\n', 2, /after a quoted string/],
]
for (const [name, text, line, message] of errors) {
  test(`error position: ${name}`, async (t) => {
    const dir = await withFiles(t, { 'nginx.conf': text })
    const e = await parseError(dir)
    assert.equal(e.code, 'PORTICO_NGINX_PARSE')
    assert.equal(e.line, line)
    assert.equal(e.file, join(dir, 'nginx.conf'))
    assert.match(e.message, message)
    assert.ok(e.message.startsWith(`${join(dir, 'nginx.conf')}:${line}: `), e.message)
  })
}

test('error inside an included file names that file', async (t) => {
  const dir = await withFiles(t, { 'nginx.conf': 'include conf.d/*.conf;\n', 'conf.d/a.conf': '\n\nserver {\n' })
  const e = await parseError(dir)
  assert.equal(e.file, join(dir, 'conf.d/a.conf'))
})

test('include cycle is refused', async (t) => {
  const dir = await withFiles(t, { 'nginx.conf': 'include a.conf;\n', 'a.conf': 'include nginx.conf;\n' })
  assert.match((await parseError(dir)).message, /include cycle/)
})

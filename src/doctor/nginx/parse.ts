/**
 * Tokenizer and parser for nginx configuration files, with `include` expansion; every
 * directive keeps the file and line it came from so findings can point at it.
 */
import { readFile, glob, stat } from 'node:fs/promises'
import { dirname, isAbsolute, resolve } from 'node:path'

/**
 * One directive: `name arg1 arg2;` or `name args { ... }`.
 * Arguments are unquoted and unescaped as nginx does (`"a\"b"` → `a"b`); variables
 * (`$host`, `${var}`) stay as written.
 */
export interface NginxDirective {
  /** Directive name, e.g. `proxy_pass`. */
  name: string
  /** Arguments after the name, unquoted. */
  args: string[]
  /** Whether each argument was written quoted (same length as `args`). */
  quoted: boolean[]
  /** Absolute path of the file the directive is written in. */
  file: string
  /** 1-based line of the directive name. */
  line: number
  /** Child directives when the directive opens a block (`http`, `server`, `location`...), else null. */
  block: NginxDirective[] | null
}

/** The parsed configuration: the top-level directives with includes expanded in place. */
export interface NginxConfigTree {
  /** Absolute path of the main configuration file. */
  file: string
  /** Every file read, main file first, in the order they were read. */
  files: string[]
  directives: NginxDirective[]
}

/**
 * Thrown when the configuration cannot be read or parsed. `message` reads
 * `file:line: what is wrong`, like `nginx -t`.
 */
export class NginxParseError extends Error {
  readonly code = 'PORTICO_NGINX_PARSE' as const
  readonly file: string
  readonly line: number
  constructor(file: string, line: number, reason: string) {
    super(`${file}:${line}: ${reason}`)
    this.name = 'NginxParseError'
    this.file = file
    this.line = line
  }
}

/** A token: a word (maybe quoted) or one of the punctuation marks `;`, `{`, `}`. */
interface Token {
  kind: 'word' | ';' | '{' | '}'
  text: string
  quoted: boolean
  line: number
}

const SPACE = new Set([' ', '\t', '\r', '\n'])

/** Unescapes as ngx_conf_read_token does: `\" \' \\ \t \r \n`; any other `\x` stays. */
function unescape(raw: string): string {
  return raw.replace(/\\(["'\\trn])/g, (_, c: string) => (c === 't' ? '\t' : c === 'r' ? '\r' : c === 'n' ? '\n' : c))
}

/**
 * Splits nginx configuration text into tokens, following ngx_conf_read_token:
 * `#` starts a comment only at the start of a token; a quote only opens a string at the
 * start of a token; `{` right after `$` belongs to a `${var}` variable; `\` escapes the
 * next character.
 *
 * @throws {NginxParseError} on an unterminated string or text glued to a closing quote
 */
export function tokenize(text: string, file: string): Token[] {
  const tokens: Token[] = []
  let i = 0
  let line = 1
  const n = text.length
  // First word of the statement being read: `*_by_lua_block {` opens Lua code, not directives.
  let first: string | null = null
  while (i < n) {
    const ch = text[i]
    if (ch === '\n') { line++; i++; continue }
    if (SPACE.has(ch)) { i++; continue }
    if (ch === '#') {
      while (i < n && text[i] !== '\n') i++
      continue
    }
    if (ch === ';' || ch === '{' || ch === '}') {
      tokens.push({ kind: ch, text: ch, quoted: false, line })
      i++
      if (ch === '{' && first !== null && first.endsWith('_by_lua_block')) {
        const end = skipLua(text, i, file, line)
        line = end.line
        i = end.index
        tokens.push({ kind: '}', text: '}', quoted: false, line })
        i++
      }
      first = null
      continue
    }
    if (first === null) first = /^[A-Za-z_][\w]*/.exec(text.slice(i, i + 64))?.[0] ?? ''
    if (ch === '"' || ch === "'") {
      const startLine = line
      let j = i + 1
      let raw = ''
      while (j < n && text[j] !== ch) {
        if (text[j] === '\\' && j + 1 < n) {
          if (text[j + 1] === '\n') line++
          raw += text[j] + text[j + 1]
          j += 2
          continue
        }
        if (text[j] === '\n') line++
        raw += text[j]
        j++
      }
      if (j >= n) throw new NginxParseError(file, startLine, `unterminated ${ch === '"' ? 'double' : 'single'}-quoted string`)
      j++
      const next = text[j]
      if (next !== undefined && !SPACE.has(next) && next !== ';' && next !== '{' && next !== '}' && next !== ')') {
        throw new NginxParseError(file, line, `unexpected "${next}" after a quoted string`)
      }
      tokens.push({ kind: 'word', text: unescape(raw), quoted: true, line: startLine })
      i = j
      continue
    }
    // An unquoted word runs to whitespace, `;` or `{` (a `}` inside a word is part of
    // it, as in nginx), except that `${` keeps going.
    const startLine = line
    let raw = ''
    let j = i
    while (j < n) {
      const c = text[j]
      if (c === '\\' && j + 1 < n) {
        raw += c + text[j + 1]
        j += 2
        continue
      }
      if (c === '{' && j > i && text[j - 1] === '$') { raw += c; j++; continue }
      if (SPACE.has(c) || c === ';' || c === '{') break
      if (c === '}' && !raw.includes('${')) break
      raw += c
      j++
    }
    tokens.push({ kind: 'word', text: unescape(raw), quoted: false, line: startLine })
    i = j
  }
  return tokens
}

/**
 * Skips the Lua code of an OpenResty `*_by_lua_block { ... }` (as its lexer does): braces
 * are counted outside Lua strings (`"..."`, `'...'`, `[[...]]`, `[=[...]=]`) and comments
 * (`--` to the end of the line, `--[[...]]`).
 *
 * @returns the index of the closing `}` and the line it is on
 * @throws {NginxParseError} when the block is not closed
 */
function skipLua(text: string, start: number, file: string, startLine: number): { index: number; line: number } {
  let depth = 1
  let line = startLine
  let i = start
  const n = text.length
  const longBracket = (at: number): number => {
    // `[[` or `[=*[`: returns the index after its closing bracket, or -1 when not one.
    const m = /^\[(=*)\[/.exec(text.slice(at, at + 64))
    if (!m) return -1
    const close = `]${m[1]}]`
    const end = text.indexOf(close, at + m[0].length)
    const stop = end < 0 ? n : end + close.length
    for (let k = at; k < stop; k++) if (text[k] === '\n') line++
    return stop
  }
  while (i < n) {
    const c = text[i]
    if (c === '\n') { line++; i++; continue }
    if (c === '-' && text[i + 1] === '-') {
      const after = longBracket(i + 2)
      if (after >= 0) { i = after; continue }
      while (i < n && text[i] !== '\n') i++
      continue
    }
    if (c === '"' || c === "'") {
      i++
      while (i < n && text[i] !== c && text[i] !== '\n') i += text[i] === '\\' ? 2 : 1
      i++
      continue
    }
    if (c === '[') {
      const after = longBracket(i)
      if (after >= 0) { i = after; continue }
    }
    if (c === '{') depth++
    else if (c === '}' && --depth === 0) return { index: i, line }
    i++
  }
  throw new NginxParseError(file, startLine, 'unexpected end of file, expecting "}" to close a *_by_lua_block')
}

/** What include expansion needs to know while parsing. */
interface ParseContext {
  /** Directory of the main configuration file; nginx resolves relative includes against it. */
  prefix: string
  files: string[]
  /** Files being read right now, to refuse include cycles. */
  stack: string[]
}

function hasGlob(path: string): boolean {
  return /[*?[]/.test(path)
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile()
  } catch {
    return false
  }
}

/**
 * Resolves the files an `include` names. Relative paths are tried against the main
 * configuration's directory (nginx's conf prefix) first, then the including file's
 * directory. A glob may match nothing (nginx accepts that); a plain path must exist.
 */
async function includeFiles(pattern: string, from: NginxDirective, ctx: ParseContext): Promise<string[]> {
  const bases = isAbsolute(pattern) ? [''] : [ctx.prefix, dirname(from.file)]
  for (const base of bases) {
    const full = base ? resolve(base, pattern) : pattern
    if (!hasGlob(full)) {
      if (await isFile(full)) return [full]
      continue
    }
    const found: string[] = []
    for await (const f of glob(full)) if (await isFile(f)) found.push(resolve(f))
    // nginx sorts glob matches (glob(3) without GLOB_NOSORT).
    if (found.length > 0) return found.sort()
  }
  if (hasGlob(pattern)) return []
  throw new NginxParseError(from.file, from.line, `include "${pattern}" not found (tried relative to ${bases.filter(Boolean).join(' and ') || '/'})`)
}

async function parseFile(file: string, ctx: ParseContext): Promise<NginxDirective[]> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (e) {
    throw new NginxParseError(file, 0, `cannot read: ${(e as Error).message}`)
  }
  ctx.files.push(file)
  ctx.stack.push(file)
  const tokens = tokenize(text, file)
  let pos = 0
  const lastLine = Math.max(1, text.split('\n').length - (text.endsWith('\n') ? 1 : 0))

  const parseBlock = async (closeLine: number | null): Promise<NginxDirective[]> => {
    const out: NginxDirective[] = []
    while (pos < tokens.length) {
      const t = tokens[pos]
      if (t.kind === '}') {
        if (closeLine === null) throw new NginxParseError(file, t.line, 'unexpected "}"')
        pos++
        return out
      }
      if (t.kind !== 'word') throw new NginxParseError(file, t.line, `unexpected "${t.kind}"`)
      const d: NginxDirective = { name: t.text, args: [], quoted: [], file, line: t.line, block: null }
      pos++
      for (;;) {
        const a = tokens[pos]
        if (a === undefined) throw new NginxParseError(file, lastLine, `unexpected end of file, expecting ";" or "}" after "${d.name}"`)
        if (a.kind === 'word') { d.args.push(a.text); d.quoted.push(a.quoted); pos++; continue }
        if (a.kind === ';') { pos++; break }
        if (a.kind === '{') {
          pos++
          d.block = await parseBlock(a.line)
          break
        }
        throw new NginxParseError(file, a.line, `directive "${d.name}" is not terminated by ";"`)
      }
      if (d.name === 'include' && d.block === null) {
        if (d.args.length !== 1) throw new NginxParseError(file, d.line, 'invalid number of arguments in "include" directive')
        for (const f of await includeFiles(d.args[0], d, ctx)) {
          if (ctx.stack.includes(f)) throw new NginxParseError(file, d.line, `include cycle: "${f}" includes itself`)
          out.push(...await parseFile(f, ctx))
        }
        continue
      }
      out.push(d)
    }
    if (closeLine !== null) throw new NginxParseError(file, lastLine, `unexpected end of file, expecting "}" (block opened on line ${closeLine})`)
    return out
  }

  const directives = await parseBlock(null)
  ctx.stack.pop()
  return directives
}

/**
 * Reads and parses an nginx configuration file, expanding `include` directives in place
 * (globs such as `conf.d/*.conf` and `sites-enabled/*` are expanded in sorted order,
 * like nginx).
 *
 * @param path the main configuration file, e.g. `/etc/nginx/nginx.conf`
 * @throws {NginxParseError} `file:line: message` on unbalanced braces, an unterminated
 *   string, a missing `;`, an include that is not found, or an unreadable file
 */
export async function parseNginxConfig(path: string): Promise<NginxConfigTree> {
  const file = resolve(path)
  const ctx: ParseContext = { prefix: dirname(file), files: [], stack: [] }
  const directives = await parseFile(file, ctx)
  return { file, files: ctx.files, directives }
}

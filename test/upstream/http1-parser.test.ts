/**
 * The upstream response parser byte by byte: a table of raw responses and the events they
 * give (RFC 9112 framing, every framing error the parser raises), the same events however
 * the bytes are split into reads, and a handler that stops the parser after every event.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import type { IncomingHttpHeaders } from 'node:http'
import { describe, test } from 'node:test'
import { ResponseParser, UpstreamParseError, type ParseErrorCode, type ResponseParserHandler } from '../../src/upstream/http1/parser.ts'

/** An event as recorded; an error's message is matched against the row's pattern. */
type Event =
  | ['info', status: number, reason: string, headers: IncomingHttpHeaders]
  | ['head', status: number, reason: string, headers: IncomingHttpHeaders, keepAlive: boolean, keepAliveTimeout: number]
  | ['body', bytes: string]
  | ['end', trailers: IncomingHttpHeaders, extra: number]
  | ['upgrade', headers: IncomingHttpHeaders, rest: string | null]
  | ['error', code: ParseErrorCode, message: RegExp | string]
  /** After the bytes, the upstream closed: whether that completed the response. */
  | ['eof', completed: boolean]

interface Row {
  name: string
  /** The bytes read, as latin1. */
  wire: string
  /** The request was HEAD. */
  head?: boolean
  /** The request asked for an upgrade. */
  upgrade?: boolean
  /** maxHeaderSize; 1024 unless given. */
  max?: number
  /** The upstream closes after the bytes. */
  eof?: boolean
  events: Event[]
}

/** Feeds `reads` to a parser and records its events; a run of body bytes is one event, whatever the reads. */
function run(row: Row, reads: Buffer[], stop = false): Event[] {
  const events: Event[] = []
  /** Callbacks so far (body runs are merged into one event, not one call). */
  let calls = 0
  /** A callback returned false, and the parser was not resumed since. */
  let stopped = false
  /** The response ended (or upgraded, or failed): nothing more may come. */
  let over = false
  const go = !stop
  /** Checks that the parser may call the handler now. */
  const enter = (what: string): void => {
    calls++
    assert.ok(!over, `${what} after the end`)
    // The end follows a stopped onHead or onBody when no byte is missing for it.
    if (what !== 'onEnd') assert.ok(!stopped, `${what} after the handler stopped the parser`)
  }
  const handler: ResponseParserHandler = {
    onInformational(status, headers, reason) {
      enter('onInformational')
      events.push(['info', status, reason, headers])
      stopped = !go
      return go
    },
    onHead(status, headers, reason) {
      enter('onHead')
      events.push(['head', status, reason, headers, parser.keepAlive, parser.keepAliveTimeout])
      stopped = !go
      return go
    },
    onBody(chunk) {
      enter('onBody')
      assert.ok(chunk.length > 0, 'an empty body event')
      const last = events.at(-1)
      if (last?.[0] === 'body') last[1] += chunk.toString('latin1')
      else events.push(['body', chunk.toString('latin1')])
      stopped = !go
      return go
    },
    onEnd(trailers) {
      enter('onEnd')
      over = true
      events.push(['end', trailers, parser.extra])
    },
    onUpgrade(headers, rest) {
      enter('onUpgrade')
      over = true
      events.push(['upgrade', headers, rest === null ? null : rest.toString('latin1')])
    },
    onError(err) {
      enter('onError')
      over = true
      assert.ok(err instanceof UpstreamParseError)
      assert.equal(err.name, 'HTTPParserError')
      events.push(['error', err.code, err.message])
    },
  }
  const parser = new ResponseParser(handler, row.max ?? 1024)
  parser.reset(row.head === true, row.upgrade === true)
  for (const read of reads) {
    stopped = false
    parser.execute(read)
    // A stopped parser goes on when resumed, until no callback comes.
    for (let n = -1; stop && n !== calls;) {
      n = calls
      stopped = false
      parser.resume()
    }
  }
  if (row.eof === true) events.push(['eof', parser.finish()])
  return events
}

/** `actual` with each error message that matches the expected pattern replaced by that pattern, for one deepEqual. */
function matched(actual: Event[], expected: Event[]): Event[] {
  return actual.map((e, i) => {
    const x = expected[i]
    if (e[0] === 'error' && x?.[0] === 'error' && x[2] instanceof RegExp && typeof e[2] === 'string' && x[2].test(e[2])) return ['error', e[1], x[2]]
    return e
  })
}

const bytes = (s: string): Buffer => Buffer.from(s, 'latin1')

function check(row: Row, reads: Buffer[], how: string, stop = false): void {
  const events = run(row, reads, stop)
  assert.deepEqual(matched(events, row.events), row.events, `${row.name} (${how})`)
}

const NONE: IncomingHttpHeaders = {}
/** Fields as the parser gives them, where Node's type has a single value for the name. */
const fields = (f: Record<string, string | string[]>): IncomingHttpHeaders => f
const CHUNKED = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'
const TE = { 'transfer-encoding': 'chunked' }

const rows: Row[] = [
  // Status line (RFC 9112 §4).
  {
    name: 'Content-Length body',
    wire: 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello',
    events: [['head', 200, 'OK', { 'content-length': '5', 'x-a': '1' }, true, -1], ['body', 'hello'], ['end', NONE, 0]],
  },
  {
    name: 'no reason phrase',
    wire: 'HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n',
    events: [['head', 200, '', { 'content-length': '0' }, true, -1], ['end', NONE, 0]],
  },
  {
    name: 'empty reason phrase',
    wire: 'HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n',
    events: [['head', 200, '', { 'content-length': '0' }, true, -1], ['end', NONE, 0]],
  },
  {
    name: 'reason phrase with spaces',
    wire: 'HTTP/1.1 404 Not Found Here\r\nContent-Length: 0\r\n\r\n',
    events: [['head', 404, 'Not Found Here', { 'content-length': '0' }, true, -1], ['end', NONE, 0]],
  },
  // Field lines (RFC 9112 §5, RFC 9110 §5.5).
  {
    name: 'names lower-cased, OWS trimmed, repeated fields as arrays, set-cookie always one',
    wire: 'HTTP/1.1 200 OK\r\nX-A:  one \t\r\nx-a: two\r\nX-A:three\r\nSet-Cookie: a=1\r\nX-Empty:\r\nContent-Length: 0\r\n\r\n',
    events: [['head', 200, 'OK', { 'x-a': ['one', 'two', 'three'], 'set-cookie': ['a=1'], 'x-empty': '', 'content-length': '0' }, true, -1], ['end', NONE, 0]],
  },
  {
    name: 'obs-text (0x80-0xff) in a value is accepted',
    wire: 'HTTP/1.1 200 OK\r\nX-A: caf\xe9\r\nContent-Length: 0\r\n\r\n',
    events: [['head', 200, 'OK', { 'x-a': 'caf\xe9', 'content-length': '0' }, true, -1], ['end', NONE, 0]],
  },
  // Persistence (RFC 9112 §9.3) and Keep-Alive: timeout.
  {
    name: 'HTTP/1.1 with Connection: close',
    wire: 'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n',
    events: [['head', 200, 'OK', { connection: 'close', 'content-length': '0' }, false, -1], ['end', NONE, 0]],
  },
  {
    name: 'HTTP/1.1 with close among other Connection options, over two fields',
    wire: 'HTTP/1.1 200 OK\r\nConnection: x-a\r\nConnection: Close, x-b\r\nContent-Length: 0\r\n\r\n',
    events: [['head', 200, 'OK', fields({ connection: ['x-a', 'Close, x-b'], 'content-length': '0' }), false, -1], ['end', NONE, 0]],
  },
  {
    name: 'HTTP/1.1 with Connection: closed (not the close option)',
    wire: 'HTTP/1.1 200 OK\r\nConnection: closed\r\nContent-Length: 0\r\n\r\n',
    events: [['head', 200, 'OK', { connection: 'closed', 'content-length': '0' }, true, -1], ['end', NONE, 0]],
  },
  {
    name: 'HTTP/1.0 without Connection: keep-alive',
    wire: 'HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n',
    events: [['head', 200, 'OK', { 'content-length': '0' }, false, -1], ['end', NONE, 0]],
  },
  {
    name: 'HTTP/1.0 with Connection: keep-alive and a Keep-Alive timeout',
    wire: 'HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nKeep-Alive: timeout=5, max=100\r\nContent-Length: 0\r\n\r\n',
    events: [['head', 200, 'OK', { connection: 'Keep-Alive', 'keep-alive': 'timeout=5, max=100', 'content-length': '0' }, true, 5], ['end', NONE, 0]],
  },
  {
    name: 'Keep-Alive timeout of a response that closes is not reported',
    wire: 'HTTP/1.1 200 OK\r\nConnection: close\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n',
    events: [['head', 200, 'OK', { connection: 'close', 'keep-alive': 'timeout=5', 'content-length': '0' }, false, -1], ['end', NONE, 0]],
  },
  {
    name: 'Keep-Alive without a timeout',
    wire: 'HTTP/1.1 200 OK\r\nKeep-Alive: max=5\r\nContent-Length: 0\r\n\r\n',
    events: [['head', 200, 'OK', { 'keep-alive': 'max=5', 'content-length': '0' }, true, -1], ['end', NONE, 0]],
  },
  // Content-Length (RFC 9112 §6.3, RFC 9110 §8.6).
  {
    name: 'Content-Length: 0 ends at the head',
    wire: 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n',
    events: [['head', 200, 'OK', { 'content-length': '0' }, true, -1], ['end', NONE, 0]],
  },
  {
    name: 'a Content-Length list of one repeated value is that value',
    wire: 'HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok',
    events: [['head', 200, 'OK', { 'content-length': '2' }, true, -1], ['body', 'ok'], ['end', NONE, 0]],
  },
  {
    name: 'two Content-Length fields of one value are one',
    wire: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 02\r\n\r\nok',
    events: [['head', 200, 'OK', { 'content-length': '2' }, true, -1], ['body', 'ok'], ['end', NONE, 0]],
  },
  {
    name: 'bytes after the Content-Length body are counted as extra',
    wire: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA',
    events: [['head', 200, 'OK', { 'content-length': '2' }, true, -1], ['body', 'ok'], ['end', NONE, 5]],
  },
  {
    name: 'the upstream closing before the Content-Length body is complete',
    wire: 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234',
    eof: true,
    events: [['head', 200, 'OK', { 'content-length': '10' }, true, -1], ['body', '01234'], ['eof', false]],
  },
  {
    name: 'the upstream closing before any byte',
    wire: '',
    eof: true,
    events: [['eof', false]],
  },
  // Chunked coding (RFC 9112 §7.1).
  {
    name: 'chunked with extensions, whitespace before them, upper-case hex and trailers',
    wire: `${CHUNKED}5;name=value\r\nhello\r\nA ; ext="q"\r\n world!!!!\r\n0\r\nX-Checksum: abc\r\nX-T: 1\r\n\r\n`,
    events: [['head', 200, 'OK', TE, true, -1], ['body', 'hello world!!!!'], ['end', { 'x-checksum': 'abc', 'x-t': '1' }, 0]],
  },
  {
    name: 'chunked with an empty trailer section',
    wire: `${CHUNKED}2\r\nok\r\n0\r\n\r\n`,
    events: [['head', 200, 'OK', TE, true, -1], ['body', 'ok'], ['end', NONE, 0]],
  },
  {
    name: 'chunked in any case, with white space',
    wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding:  Chunked \r\n\r\n2\r\nok\r\n0\r\n\r\n',
    events: [['head', 200, 'OK', { 'transfer-encoding': 'Chunked' }, true, -1], ['body', 'ok'], ['end', NONE, 0]],
  },
  // A transfer coding besides chunked: Portico would drop it with the field and alter the body.
  {
    name: 'chunked last among transfer codings is refused',
    wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: Chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n',
    events: [['error', 'HPE_INVALID_TRANSFER_ENCODING', /^response transfer coding "gzip, Chunked" is not chunked alone$/]],
  },
  {
    name: 'chunked twice is refused',
    wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n',
    events: [['error', 'HPE_INVALID_TRANSFER_ENCODING', /is not chunked alone$/]],
  },
  {
    name: 'HTTP/1.0 with Transfer-Encoding: chunked is read, and the connection not kept (RFC 9112 §6.1)',
    wire: 'HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n',
    events: [['head', 200, 'OK', fields({ connection: 'keep-alive', 'transfer-encoding': 'chunked' }), false, -1], ['body', 'ok'], ['end', NONE, 0]],
  },
  {
    name: 'bytes after the last chunk are counted as extra',
    wire: `${CHUNKED}2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n`,
    events: [['head', 200, 'OK', TE, true, -1], ['body', 'ok'], ['end', NONE, 17]],
  },
  // Read until close (RFC 9112 §6.3 rules 4 and 8).
  {
    name: 'no framing field: the body runs to the close',
    wire: 'HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nall of it\r\n\r\nuntil the close',
    eof: true,
    events: [['head', 200, 'OK', { 'x-a': '1' }, false, -1], ['body', 'all of it\r\n\r\nuntil the close'], ['end', NONE, 0], ['eof', true]],
  },
  {
    name: 'a transfer coding other than chunked last is refused (it would be read to the close, then dropped)',
    wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nzz',
    events: [['error', 'HPE_INVALID_TRANSFER_ENCODING', /^response transfer coding "chunked, gzip" is not chunked alone$/]],
  },
  {
    name: 'no fields at all',
    wire: 'HTTP/1.0 200 OK\r\n\r\n',
    eof: true,
    events: [['head', 200, 'OK', NONE, false, -1], ['end', NONE, 0], ['eof', true]],
  },
  // Responses without a body (RFC 9112 §6.3 rule 1).
  {
    name: '204 with a Content-Length has no body',
    wire: 'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n',
    events: [['head', 204, 'No Content', { 'content-length': '5' }, true, -1], ['end', NONE, 0]],
  },
  {
    name: '304 with chunked has no body',
    wire: 'HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n',
    events: [['head', 304, 'Not Modified', TE, true, -1], ['end', NONE, 0]],
  },
  {
    name: 'the response to HEAD has no body',
    wire: 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n',
    head: true,
    events: [['head', 200, 'OK', { 'content-length': '100' }, true, -1], ['end', NONE, 0]],
  },
  // Interim responses (RFC 9110 §15.2).
  {
    name: '100 Continue, then 103 Early Hints, then 200',
    wire: 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
    events: [
      ['info', 100, 'Continue', NONE],
      ['info', 103, 'Early Hints', { link: '</a.css>; rel=preload' }],
      ['head', 200, 'OK', { 'content-length': '2' }, true, -1],
      ['body', 'ok'],
      ['end', NONE, 0],
    ],
  },
  // Upgrade (RFC 9110 §7.8, §15.2.2).
  {
    name: '101 to an upgrade request, with the bytes after the head',
    wire: 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello',
    upgrade: true,
    events: [['upgrade', { upgrade: 'websocket', connection: 'Upgrade' }, '\x81\x05hello']],
  },
  {
    name: '101 to an upgrade request, nothing after the head',
    wire: 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n',
    upgrade: true,
    events: [['upgrade', { upgrade: 'websocket' }, null]],
  },
  {
    name: 'an upgrade request answered with a final response',
    wire: 'HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n',
    upgrade: true,
    events: [['head', 426, 'Upgrade Required', { 'content-length': '0' }, true, -1], ['end', NONE, 0]],
  },

  // Every framing error, one row for each place the parser raises one.
  {
    name: 'bytes that cannot start a response are refused before the head is complete',
    wire: 'SSH-2.0-OpenSSH_9.6\r\n',
    events: [['error', 'HPE_INVALID_CONSTANT', /^not an HTTP\/1\.x response: "S/]],
  },
  {
    name: 'a header section over maxHeaderSize, still arriving',
    wire: `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(100)}`,
    max: 64,
    events: [['error', 'HPE_HEADER_OVERFLOW', /^response header section larger than 64 bytes$/]],
  },
  {
    name: 'a header section over maxHeaderSize, complete',
    wire: `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(100)}\r\n\r\n`,
    max: 64,
    events: [['error', 'HPE_HEADER_OVERFLOW', /^response header section larger than 64 bytes$/]],
  },
  {
    name: 'HTTP/2 status line',
    wire: 'HTTP/2 200 OK\r\n\r\n',
    events: [['error', 'HPE_INVALID_CONSTANT', /^not an HTTP\/1\.x status line: "HTTP\/2 200 OK"$/]],
  },
  {
    name: 'two spaces before the status code',
    wire: 'HTTP/1.1  200 OK\r\n\r\n',
    events: [['error', 'HPE_INVALID_CONSTANT', /^not an HTTP\/1\.x status line/]],
  },
  {
    name: 'no space after the status code',
    wire: 'HTTP/1.1 200OK\r\n\r\n',
    events: [['error', 'HPE_INVALID_CONSTANT', /^not an HTTP\/1\.x status line/]],
  },
  {
    name: 'a status line too short for a status code',
    wire: 'HTTP/1.1 20\r\n\r\n',
    events: [['error', 'HPE_INVALID_CONSTANT', /^not an HTTP\/1\.x status line/]],
  },
  {
    name: 'a status code that is not three digits',
    wire: 'HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n',
    events: [['error', 'HPE_INVALID_STATUS', /^invalid status line "HTTP\/1\.1 2x0 OK"$/]],
  },
  {
    name: 'a status code under 100',
    wire: 'HTTP/1.1 099 Low\r\n\r\n',
    events: [['error', 'HPE_INVALID_STATUS', /^invalid status line/]],
  },
  {
    name: 'a status code over 599 (RFC 9110 §15)',
    wire: 'HTTP/1.1 600 Beyond\r\nContent-Length: 0\r\n\r\n',
    events: [['error', 'HPE_INVALID_STATUS', /^invalid status line "HTTP\/1\.1 600 Beyond"$/]],
  },
  {
    name: 'HTTP/1.2',
    wire: 'HTTP/1.2 200 OK\r\n\r\n',
    events: [['error', 'HPE_INVALID_STATUS', /^invalid status line/]],
  },
  {
    name: 'obs-fold',
    wire: 'HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 2\r\n\r\nok',
    events: [['error', 'HPE_INVALID_HEADER_TOKEN', /^obsolete line folding in a response field$/]],
  },
  {
    name: 'a field line without a colon',
    wire: 'HTTP/1.1 200 OK\r\nX-A\r\nContent-Length: 2\r\n\r\nok',
    events: [['error', 'HPE_INVALID_HEADER_TOKEN', /^invalid field line "X-A"$/]],
  },
  {
    name: 'a field line with an empty name',
    wire: 'HTTP/1.1 200 OK\r\n: v\r\n\r\n',
    events: [['error', 'HPE_INVALID_HEADER_TOKEN', /^invalid field line ": v"$/]],
  },
  {
    name: 'whitespace before the colon',
    wire: 'HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok',
    events: [['error', 'HPE_INVALID_HEADER_TOKEN', /^invalid field name "Content-Length "$/]],
  },
  {
    name: 'a control character in a value',
    wire: 'HTTP/1.1 200 OK\r\nX-A: a\x01b\r\n\r\n',
    events: [['error', 'HPE_INVALID_HEADER_TOKEN', /^invalid characters in the value of X-A$/]],
  },
  {
    name: 'a non-numeric Content-Length',
    wire: 'HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok',
    events: [['error', 'HPE_INVALID_CONTENT_LENGTH', /^invalid Content-Length "2x"$/]],
  },
  {
    name: 'a negative Content-Length',
    wire: 'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n',
    events: [['error', 'HPE_INVALID_CONTENT_LENGTH', /^invalid Content-Length/]],
  },
  {
    name: 'an empty Content-Length',
    wire: 'HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n',
    events: [['error', 'HPE_INVALID_CONTENT_LENGTH', /^invalid Content-Length ""$/]],
  },
  {
    name: 'a Content-Length of 16 digits',
    wire: 'HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000\r\n\r\n',
    events: [['error', 'HPE_INVALID_CONTENT_LENGTH', /^invalid Content-Length/]],
  },
  {
    name: 'a Content-Length list of different values',
    wire: 'HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok!',
    events: [['error', 'HPE_UNEXPECTED_CONTENT_LENGTH', /^conflicting Content-Length values$/]],
  },
  {
    name: 'two Content-Length fields of different values',
    wire: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!',
    events: [['error', 'HPE_UNEXPECTED_CONTENT_LENGTH', /^conflicting Content-Length values$/]],
  },
  {
    name: 'both Transfer-Encoding and Content-Length',
    wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\nok\r\n0\r\n\r\n',
    events: [['error', 'HPE_UNEXPECTED_CONTENT_LENGTH', /^response has both Transfer-Encoding and Content-Length$/]],
  },
  {
    name: '101 to a request that asked for no upgrade',
    wire: 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n',
    events: [['error', 'HPE_INVALID_STATUS', /^101 Switching Protocols to a request that asked for no upgrade$/]],
  },
  {
    name: 'a chunk-size line over 4096 bytes',
    wire: `${CHUNKED}2;${'x'.repeat(5000)}`,
    events: [['head', 200, 'OK', TE, true, -1], ['error', 'HPE_INVALID_CHUNK_SIZE', /^chunk-size line too long$/]],
  },
  {
    name: 'a chunk size that is not hex',
    wire: `${CHUNKED}2\r\nok\r\nzz\r\nxx\r\n0\r\n\r\n`,
    events: [['head', 200, 'OK', TE, true, -1], ['body', 'ok'], ['error', 'HPE_INVALID_CHUNK_SIZE', /^invalid chunk size "zz"$/]],
  },
  {
    name: 'an empty chunk-size line',
    wire: `${CHUNKED}\r\nok\r\n`,
    events: [['head', 200, 'OK', TE, true, -1], ['error', 'HPE_INVALID_CHUNK_SIZE', /^invalid chunk size ""$/]],
  },
  {
    name: 'a chunk size of 13 hex digits',
    wire: `${CHUNKED}1000000000000\r\n`,
    events: [['head', 200, 'OK', TE, true, -1], ['error', 'HPE_INVALID_CHUNK_SIZE', /^invalid chunk size/]],
  },
  {
    name: 'a chunk size after whitespace',
    wire: `${CHUNKED} 2\r\nok\r\n0\r\n\r\n`,
    events: [['head', 200, 'OK', TE, true, -1], ['error', 'HPE_INVALID_CHUNK_SIZE', /^invalid chunk size " 2"$/]],
  },
  {
    name: 'chunk data longer than its size (no CRLF after it)',
    wire: `${CHUNKED}2\r\nokXX\r\n0\r\n\r\n`,
    events: [['head', 200, 'OK', TE, true, -1], ['body', 'ok'], ['error', 'HPE_STRICT', /^chunk data not followed by CRLF$/]],
  },
  {
    name: 'a trailer section over maxHeaderSize',
    wire: `${CHUNKED}0\r\nX-T: ${'a'.repeat(100)}`,
    max: 64,
    events: [['head', 200, 'OK', TE, true, -1], ['error', 'HPE_HEADER_OVERFLOW', /^trailer section too large$/]],
  },
  {
    name: 'an invalid trailer field',
    wire: `${CHUNKED}2\r\nok\r\n0\r\nX T: 1\r\n\r\n`,
    events: [['head', 200, 'OK', TE, true, -1], ['body', 'ok'], ['error', 'HPE_INVALID_HEADER_TOKEN', /^invalid field name "X T"$/]],
  },
  {
    name: 'conflicting Content-Length values in the trailers',
    wire: `${CHUNKED}0\r\nContent-Length: 1, 2\r\n\r\n`,
    events: [['head', 200, 'OK', TE, true, -1], ['error', 'HPE_UNEXPECTED_CONTENT_LENGTH', /^conflicting Content-Length values$/]],
  },
]

/** Rows whose events must not depend on where the reads split the bytes (all their bytes belong to the response). */
const SPLIT = new Set([
  'Content-Length body',
  'names lower-cased, OWS trimmed, repeated fields as arrays, set-cookie always one',
  'chunked with extensions, whitespace before them, upper-case hex and trailers',
  'no framing field: the body runs to the close',
  '204 with a Content-Length has no body',
  '100 Continue, then 103 Early Hints, then 200',
  'bytes that cannot start a response are refused before the head is complete',
  'obs-fold',
  'a chunk size that is not hex',
  'chunk data longer than its size (no CRLF after it)',
  'a trailer section over maxHeaderSize',
  'a chunk-size line over 4096 bytes',
])

describe('response parser: the table, each response in one read', () => {
  for (const row of rows) {
    test(row.name, () => check(row, [bytes(row.wire)], 'one read'))
  }
})

describe('response parser: the same events however the reads split the bytes', () => {
  const split = rows.filter((r) => SPLIT.has(r.name))
  test('every row named for splitting exists', () => {
    assert.equal(split.length, SPLIT.size)
  })
  for (const row of split) {
    test(row.name, () => {
      const all = bytes(row.wire)
      for (let i = 1; i < all.length; i++) check(row, [all.subarray(0, i), all.subarray(i)], `split at ${i}`)
      // Three reads: every first split with the rest split once more in the middle.
      for (let i = 1; i < all.length - 1; i++) {
        const j = i + Math.ceil((all.length - i) / 2)
        check(row, [all.subarray(0, i), all.subarray(i, j), all.subarray(j)], `split at ${i} and ${j}`)
      }
      const each: Buffer[] = []
      for (let i = 0; i < all.length; i++) each.push(all.subarray(i, i + 1))
      check(row, each, 'a read per byte')
    })
  }
})

describe('response parser: a handler that stops it after every event', () => {
  for (const row of rows) {
    test(row.name, () => {
      check(row, [bytes(row.wire)], 'stopped after every event, resumed', true)
      if (SPLIT.has(row.name)) {
        const all = bytes(row.wire)
        const each: Buffer[] = []
        for (let i = 0; i < all.length; i++) each.push(all.subarray(i, i + 1))
        check(row, each, 'a read per byte, stopped after every event', true)
      }
    })
  }
})

describe('response parser: state between and after responses', () => {
  /** A parser with a handler that records event names. */
  function recorder(max = 1024): { parser: ResponseParser; names: string[] } {
    const names: string[] = []
    const handler: ResponseParserHandler = {
      onInformational: (status) => { names.push(`info ${status}`); return true },
      onHead: (status) => { names.push(`head ${status}`); return true },
      onBody: (chunk) => { names.push(`body ${chunk.toString('latin1')}`); return true },
      onEnd: () => { names.push('end') },
      onUpgrade: () => { names.push('upgrade') },
      onError: (err) => { names.push(`error ${err.code}`) },
    }
    return { parser: new ResponseParser(handler, max), names }
  }

  test('one parser reads the responses of a connection one after another, after reset', () => {
    const { parser, names } = recorder()
    parser.reset(false, false)
    assert.equal(parser.started, false)
    parser.execute(bytes('HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na'))
    assert.equal(parser.finished, true)
    parser.reset(true, false)
    assert.equal(parser.finished, false)
    assert.equal(parser.started, false)
    parser.execute(bytes('HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n'))
    parser.reset(false, false)
    parser.execute(bytes(`${CHUNKED}1\r\nc\r\n0\r\n\r\n`))
    assert.deepEqual(names, ['head 200', 'body a', 'end', 'head 200', 'end', 'head 200', 'body c', 'end'])
  })

  test('started: once a byte of the response came, interim ones included', () => {
    const { parser } = recorder()
    parser.reset(false, false)
    parser.execute(bytes('H'))
    assert.equal(parser.started, true)
    parser.reset(false, false)
    parser.execute(bytes('HTTP/1.1 100 Continue\r\n\r\n'))
    assert.equal(parser.started, true)
    assert.equal(parser.pending, 0)
  })

  test('a stopped parser keeps the bytes it did not parse, and pending counts them', () => {
    const names: string[] = []
    const parser = new ResponseParser({
      onInformational: () => true,
      onHead: () => { names.push('head'); return false },
      onBody: (chunk) => { names.push(`body ${chunk.toString('latin1')}`); return true },
      onEnd: () => { names.push('end') },
      onUpgrade: () => {},
      onError: () => {},
    }, 1024)
    parser.reset(false, false)
    parser.execute(bytes('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab'))
    assert.deepEqual(names, ['head'])
    assert.equal(parser.pending, 2)
    // Bytes read while stopped wait with the others.
    parser.push(bytes('cd'))
    assert.equal(parser.pending, 4)
    parser.resume()
    assert.deepEqual(names, ['head', 'body abcd', 'end'])
    assert.equal(parser.pending, 0)
  })

  test('a response without a body ends even when onHead stops the parser', () => {
    const names: string[] = []
    const parser = new ResponseParser({
      onInformational: () => true,
      onHead: () => { names.push('head'); return false },
      onBody: () => true,
      onEnd: () => { names.push('end') },
      onUpgrade: () => {},
      onError: () => {},
    }, 1024)
    parser.reset(false, false)
    parser.execute(bytes('HTTP/1.1 204 No Content\r\n\r\n'))
    assert.deepEqual(names, ['head', 'end'])
  })

  test('after an error the parser ignores what follows until reset', () => {
    const { parser, names } = recorder()
    parser.reset(false, false)
    parser.execute(bytes('HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n'))
    parser.execute(bytes('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'))
    assert.equal(parser.finish(), false)
    assert.deepEqual(names, ['error HPE_INVALID_CONTENT_LENGTH'])
    parser.reset(false, false)
    parser.execute(bytes('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'))
    assert.deepEqual(names, ['error HPE_INVALID_CONTENT_LENGTH', 'head 200', 'end'])
  })

  test('finish() completes only a body delimited by the close', () => {
    const { parser, names } = recorder()
    parser.reset(false, false)
    parser.execute(bytes('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n'))
    assert.equal(parser.finish(), false)
    parser.reset(false, false)
    parser.execute(bytes('HTTP/1.1 200 OK\r\n'))
    assert.equal(parser.finish(), false)
    assert.deepEqual(names, ['head 200', 'body ok'])
  })
})

test('every place the parser raises a framing error has a row in the table', () => {
  // Each `new UpstreamParseError(code, message)` of the parser, by code and the message's fixed start.
  const source = readFileSync(new URL('../../src/upstream/http1/parser.ts', import.meta.url), 'utf8')
  const sites = new Set<string>()
  for (const m of source.matchAll(/new UpstreamParseError\('(HPE_\w+)', [`']([^`'$]*)/g)) sites.add(`${m[1]} ${m[2]}`)
  assert.ok(sites.size >= 15, `only ${sites.size} error sites found: is the pattern still right?`)
  const raised = new Set<string>()
  for (const row of rows) {
    for (const e of run(row, [bytes(row.wire)])) {
      if (e[0] !== 'error') continue
      for (const site of sites) if (`${e[1]} ${String(e[2])}`.startsWith(site)) raised.add(site)
    }
  }
  assert.deepEqual([...sites].filter((s) => !raised.has(s)), [])
})

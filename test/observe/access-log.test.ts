import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { RequestContext } from '../../src/observe/context.ts'
import { createAccessLog, toRecord } from '../../src/observe/access-log.ts'

function context(): RequestContext {
  // Quotes, backslashes, control characters, non-ASCII, a surrogate pair and a lone surrogate.
  return new RequestContext('id-"x"\\', '::1', 'GET', 'h\u0001ost', '/p\u00e9/\ud83d\ude00/\ud800?q="1"', 'HTTP/1.1')
}

test('each file line is the JSON of the request\'s record, whatever the fields hold', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'portico-log-'))
  try {
    const path = join(dir, 'access.log')
    const log = createAccessLog('json', path)
    const expected: string[] = []
    // The JSON the memory log's record gives for the duration the sink computed.
    log.observe = (ctx, d) => { expected.push(JSON.stringify(toRecord(ctx, d))) }
    const bare = context()
    log.write(bare)
    const failed = context()
    failed.route = 'r'
    failed.upstream = 'u'
    failed.endpoint = '[::1]:8080'
    failed.status = 499
    failed.attempts = 2
    failed.bytesSent = 1234
    failed.timings.ttfb_ms = 1.23456
    failed.timings.connect_ms = 0.001
    failed.error = 'connection_terminated'
    failed.details = 'line\n"quoted"\ttab'
    failed.downstream = 'client_closed'
    failed.cache = 'portico; fwd=miss'
    failed.connectionReused = true
    log.write(failed)
    // After a line with `downstream`, the reused record must not carry it over.
    const ok = context()
    ok.status = 200
    ok.upstreamStatus = 200
    log.write(ok)
    await log.flush()
    const lines = (await readFile(path, 'utf8')).split('\n')
    assert.equal(lines.pop(), '')
    assert.deepEqual(lines, expected)
    assert.equal(JSON.parse(lines[0]).path, bare.path)
    assert.equal(JSON.parse(lines[1]).downstream, 'client_closed')
    assert.equal('downstream' in JSON.parse(lines[2]), false)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('the file sink batches lines, observes each request once, and flush writes every line', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'portico-log-'))
  try {
    const path = join(dir, 'access.log')
    const log = createAccessLog('json', path)
    const seen: number[] = []
    log.observe = (ctx, d) => { seen.push(d); assert.ok(ctx.requestId.startsWith('r')) }
    // Enough lines to fill the 64 KiB buffer several times, and one longer than the buffer.
    const n = 600
    for (let i = 0; i < n; i++) {
      const c = new RequestContext(`r${i}`, '127.0.0.1', 'GET', 'h', `/${'x'.repeat(i % 300)}`, 'HTTP/1.1')
      c.status = 200
      // Every third request a client that left: the next line must not keep its `downstream`.
      if (i % 3 === 1) {
        c.downstream = 'client_closed'
        c.status = 499
        c.error = 'connection_terminated'
        c.details = 'a "detail"'
      }
      log.write(c)
    }
    const big = new RequestContext('rbig', '127.0.0.1', 'GET', 'h', `/${'é'.repeat(40_000)}`, 'HTTP/1.1')
    log.write(big)
    await log.flush()
    const lines = (await readFile(path, 'utf8')).split('\n')
    assert.equal(lines.pop(), '')
    assert.equal(lines.length, n + 1)
    assert.equal(seen.length, n + 1)
    for (let i = 0; i < n; i++) {
      const line = JSON.parse(lines[i])
      assert.equal(line.request_id, `r${i}`)
      assert.equal(line.downstream, i % 3 === 1 ? 'client_closed' : undefined, lines[i])
      assert.equal('downstream' in line, i % 3 === 1)
      assert.equal(line.details, i % 3 === 1 ? 'a "detail"' : null)
    }
    assert.equal(JSON.parse(lines[n]).path, big.path)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('a worker\'s lines say which worker wrote them, in both formats; a small buffer keeps every line whole', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'portico-log-'))
  try {
    const json = join(dir, 'json.log')
    const text = join(dir, 'text.log')
    const a = createAccessLog('json', json, { worker: 2, bufferBytes: 4096 })
    const b = createAccessLog('text', text, { worker: 3 })
    for (let i = 0; i < 200; i++) {
      a.write(context())
      b.write(context())
    }
    await a.flush()
    await b.flush()
    const lines = (await readFile(json, 'utf8')).trimEnd().split('\n')
    assert.equal(lines.length, 200)
    for (const l of lines) assert.equal((JSON.parse(l) as { worker: number }).worker, 2)
    const textLines = (await readFile(text, 'utf8')).trimEnd().split('\n')
    assert.equal(textLines.length, 200)
    assert.ok(textLines.every((l) => l.endsWith(' worker=3')))
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('with writes bounded to one pipe write (workers on a shared stdout), a line longer than that is shortened, never split', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'portico-log-'))
  try {
    for (const format of ['json', 'text'] as const) {
      const file = join(dir, `${format}.log`)
      const log = createAccessLog(format, file, { worker: 1, bufferBytes: 4096 })
      const long = new RequestContext('long-1', '127.0.0.1', 'GET', 'h'.repeat(3000), '/p/' + 'é'.repeat(5000), 'HTTP/1.1')
      long.details = 'd'.repeat(3000)
      log.write(context())
      log.write(long)
      log.write(context())
      await log.flush()
      const lines = (await readFile(file, 'utf8')).trimEnd().split('\n')
      assert.equal(lines.length, 3, format)
      for (const l of lines) assert.ok(Buffer.byteLength(l) + 1 <= 4096, `${format}: a line of ${Buffer.byteLength(l)} bytes`)
      if (format === 'json') {
        const r = JSON.parse(lines[1]) as { request_id: string; path: string; host: string; worker: number }
        assert.equal(r.request_id, 'long-1')
        assert.equal(r.worker, 1)
        assert.ok(r.path.startsWith('/p/éé') && r.path.endsWith('…[cut]'), r.path.slice(0, 20))
      } else {
        assert.match(lines[1], /long-1/)
        assert.match(lines[1], /…\[cut\]/)
        assert.ok(lines[1].endsWith(' worker=1'))
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

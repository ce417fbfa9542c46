// Refusals of a client request answer with the status, title and Proxy-Status of their
// row of the cause table (http_request_denied.<variant>), and are logged like any cause.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Readable } from 'node:stream'
import { oneUpstream, testEnv } from '../helpers/gateway.ts'
import { send } from '../helpers/client.ts'
import { expectExchange } from '../helpers/expect.ts'
import { CAUSES } from '../../src/failures/causes.ts'

const env = testEnv()

/** A config whose listener accepts request bodies up to 1 KiB. */
function limited(url: string) {
  const cfg = oneUpstream([url])
  cfg.listeners = [{ address: '127.0.0.1:0', max_request_body_size: '1KiB' }]
  return cfg
}

/** An upstream that answers once it has read the whole request body, counting requests. */
async function wholeBodyUpstream(): Promise<{ url: string; requests: () => number }> {
  let requests = 0
  const url = await env.upstream((req, res) => {
    requests++
    req.resume()
    req.on('end', () => res.end('ok'))
    req.on('error', () => {})
  })
  return { url, requests: () => requests }
}

test('a body over the limit by Content-Length: 413 Content Too Large with the body-limit title, http_request_denied, logged', async () => {
  const up = await wholeBodyUpstream()
  const gw = await env.gateway(limited(up.url))
  const r = await send(gw.port, { method: 'POST', path: '/upload', body: Buffer.alloc(4096, 1) })
  const rec = await expectExchange(gw, r, { status: 413, error: 'http_request_denied', attempts: 0 })
  const html = r.body.toString('utf8')
  assert.match(html, /<title>413 Content Too Large<\/title>/)
  assert.ok(html.includes(`<b>${CAUSES['http_request_denied.body_too_large'].title}</b>`), html)
  assert.ok(!html.includes(CAUSES['http_request_denied.access_rule'].title))
  assert.equal(r.headers['retry-after'], undefined)
  assert.match(rec.details ?? '', /4096 bytes is over the limit of 1024/)
  assert.equal(up.requests(), 0)
})

test('a chunked body that grows over the limit while it streams: the same 413 page, as JSON when asked', async () => {
  const up = await wholeBodyUpstream()
  const gw = await env.gateway(limited(up.url))
  const body = Readable.from(Array.from({ length: 8 }, () => Buffer.alloc(512, 2)))
  const r = await send(gw.port, { method: 'POST', path: '/upload', body, headers: { accept: 'application/json' } })
  await expectExchange(gw, r, { status: 413, error: 'http_request_denied' })
  const json = r.json()
  assert.equal(json.status, 413)
  assert.equal(json.error, 'http_request_denied')
  assert.equal(json.title, CAUSES['http_request_denied.body_too_large'].title)
  await gw.settled(5000)
})

test('a refusal of the validate phase takes its status and words from the cause table: 405 for TRACE', async () => {
  const up = await wholeBodyUpstream()
  const gw = await env.gateway(oneUpstream([up.url]))
  const r = await send(gw.port, { method: 'TRACE', path: '/x' })
  const rec = await expectExchange(gw, r, { status: 405, error: 'http_request_denied', attempts: 0 })
  const row = CAUSES['http_request_denied.method_not_allowed']
  assert.match(r.body.toString('utf8'), /<title>405 Method Not Allowed<\/title>/)
  assert.ok(r.body.toString('utf8').includes(row.title))
  assert.ok(r.body.toString('utf8').includes(row.hint))
  assert.match(rec.details ?? '', /^method_not_allowed: /)
  assert.equal(up.requests(), 0)
})

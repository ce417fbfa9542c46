// The RFC 9111 shared cache end to end: real loopback origins that set Cache-Control, ETag and Vary and count requests.
import assert from 'node:assert/strict'
import http from 'node:http'
import { test, type TestContext } from 'node:test'
import { header, send } from '../helpers/client.ts'
import { bodyText, cached, countingOrigin, storedVariants, whenNotStored, whenStored } from '../helpers/cache.ts'
import { testEnv } from '../helpers/gateway.ts'

const env = testEnv()

/** An origin that answers with `respond` and counts requests by path. */
const origin = (respond: Parameters<typeof countingOrigin>[1]) => countingOrigin(env, respond)

/**
 * Freezes the wall clock (`Date`), which the cache's freshness reads (`http-cache-semantics`
 * ages a stored response by `Date.now()`), so a test moves time on with `t.mock.timers.tick(ms)`
 * instead of waiting for it. Timers stay real: sockets and timeouts work as usual.
 */
function freezeWallClock(t: TestContext): void {
  t.mock.timers.enable({ apis: ['Date'], now: Date.now() })
}

test('a fresh response is a hit within max-age and a miss after it', async (t) => {
  freezeWallClock(t)
  const o = await origin((_req, res, n) => {
    res.writeHead(200, { 'cache-control': 'max-age=1', 'content-type': 'text/plain' })
    res.end(`v${n}`)
  })
  const gw = await env.gateway(cached(o.url))
  const a = await send(gw.port, { path: '/f' })
  assert.equal(a.body.toString(), 'v1')
  assert.equal(header(a, 'cache-status'), 'portico; fwd=uri-miss; fwd-status=200; stored')
  await whenStored(gw, '/f')
  const b = await send(gw.port, { path: '/f' })
  assert.equal(b.body.toString(), 'v1')
  // The clock stands still: no time has passed since the response was stored.
  assert.equal(header(b, 'cache-status'), 'portico; hit; ttl=1')
  assert.equal(header(b, 'age'), '0')
  assert.equal(o.count('/f'), 1)
  const rec = await gw.record(header(b, 'x-request-id'))
  assert.equal(rec.cache, header(b, 'cache-status'))
  assert.equal(rec.status, 200)
  t.mock.timers.tick(1100)
  const c = await send(gw.port, { path: '/f' })
  assert.equal(c.body.toString(), 'v2')
  assert.match(header(c, 'cache-status'), /^portico; fwd=stale; fwd-status=200; stored$/)
  assert.equal(o.count('/f'), 2)
})

test('Vary: each variant is stored and served to the matching requests only', async () => {
  const o = await origin((req, res) => {
    res.writeHead(200, { 'cache-control': 'max-age=60', vary: 'Accept-Language' })
    res.end(`lang=${req.headers['accept-language'] ?? 'none'}`)
  })
  const gw = await env.gateway(cached(o.url))
  for (let i = 0; i < 2; i++) {
    assert.equal((await send(gw.port, { path: '/v', headers: { 'accept-language': 'en' } })).body.toString(), 'lang=en')
    assert.equal((await send(gw.port, { path: '/v', headers: { 'accept-language': 'fr' } })).body.toString(), 'lang=fr')
  }
  const miss = await send(gw.port, { path: '/v' })
  assert.equal(miss.body.toString(), 'lang=none')
  assert.match(header(miss, 'cache-status'), /fwd=vary-miss/)
  assert.equal(o.count('/v'), 3)
})

test('Vary: Accept-Language matches regardless of case, order and spaces; other fields regardless of spaces around commas', async () => {
  const o = await origin((req, res, n) => {
    res.writeHead(200, { 'cache-control': 'max-age=60', vary: 'Accept-Language, Foo' })
    res.end(`v${n} ${req.headers['accept-language']}`)
  })
  const gw = await env.gateway(cached(o.url))
  const first = await send(gw.port, { path: '/n', headers: { 'accept-language': 'en, de;q=0.5', foo: '1,2' } })
  assert.match(header(first, 'cache-status'), /fwd=uri-miss; fwd-status=200; stored/)
  for (const [lang, foo] of [['de;q=0.5, en', '1, 2'], ['EN, De;Q=0.5', ' 1 ,2 '], [' en ,  de; q=0.5', '1,2']]) {
    const r = await send(gw.port, { path: '/n', headers: { 'accept-language': lang, foo } })
    assert.equal(r.status, 200)
    assert.match(header(r, 'cache-status'), /^portico; hit/, `${lang} / ${foo}`)
    assert.equal(r.body.toString(), 'v1 en, de;q=0.5')
  }
  const other = await send(gw.port, { path: '/n', headers: { 'accept-language': 'en, fr;q=0.5', foo: '1,2' } })
  assert.match(header(other, 'cache-status'), /fwd=vary-miss/)
  assert.equal(other.body.toString(), 'v2 en, fr;q=0.5')
})

test('revalidation: a 304 freshens the stored headers and the stored 200 is served', async () => {
  const o = await origin((req, res, n) => {
    if (req.headers['if-none-match'] === '"e1"') {
      res.writeHead(304, { etag: '"e1"', 'cache-control': 'max-age=60', 'x-version': `${n}` })
      res.end()
      return
    }
    res.writeHead(200, { etag: '"e1"', 'cache-control': 'max-age=0', 'x-version': `${n}` })
    res.end('body-one')
  })
  const gw = await env.gateway(cached(o.url))
  await send(gw.port, { path: '/r' })
  const b = await send(gw.port, { path: '/r' })
  assert.equal(b.status, 200)
  assert.equal(b.body.toString(), 'body-one')
  assert.equal(header(b, 'x-version'), '2')
  assert.match(header(b, 'cache-status'), /^portico; fwd=stale; fwd-status=304/)
  assert.equal(o.seen[1]['if-none-match'], '"e1"')
  const c = await send(gw.port, { path: '/r' })
  assert.match(header(c, 'cache-status'), /^portico; hit/)
  assert.equal(header(c, 'x-version'), '2')
  assert.equal(o.count('/r'), 2)
  // The client's own validator gets a 304 from the store.
  const d = await send(gw.port, { path: '/r', headers: { 'if-none-match': '"e1"' } })
  assert.equal(d.status, 304)
})

test('an unsafe method with a non-error response invalidates the URL and its Location (RFC 9111 §4.4)', async () => {
  const o = await origin((req, res, n) => {
    if (req.method === 'POST') {
      res.writeHead(201, { location: '/other' })
      res.end()
      return
    }
    res.writeHead(200, { 'cache-control': 'max-age=60' })
    res.end(`${req.url} ${n}`)
  })
  const gw = await env.gateway(cached(o.url))
  await send(gw.port, { path: '/item' })
  await send(gw.port, { path: '/other' })
  assert.match(header(await send(gw.port, { path: '/item' }), 'cache-status'), /hit/)
  const post = await send(gw.port, { path: '/item', method: 'POST', body: 'x' })
  assert.equal(post.status, 201)
  assert.match(header(post, 'cache-status'), /fwd=method/)
  // Invalidation runs as the response starts; with a shared store it may end after the client has it.
  await whenNotStored(gw, '/item')
  await whenNotStored(gw, '/other')
  assert.match(header(await send(gw.port, { path: '/item' }), 'cache-status'), /fwd=uri-miss/)
  assert.match(header(await send(gw.port, { path: '/other' }), 'cache-status'), /fwd=uri-miss/)
})

/** Stores /s with max-age=0, then makes the origin fail the way `fail` does. */
async function staleSetup(fail: 'refuse' | 'hang' | 503) {
  let failing = false
  const server = http.createServer((_req, res) => {
    if (!failing) {
      res.writeHead(200, { 'cache-control': 'max-age=0', etag: '"s"' })
      res.end('stale-body')
    } else if (fail === 503) {
      res.writeHead(503, { 'content-type': 'text/plain' })
      res.end('down')
    }
    // 'hang': never answer
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as { port: number }).port
  env.defer(() => new Promise<void>((r) => { server.close(() => r()); server.closeAllConnections() }))
  const gw = await env.gateway(cached(`http://127.0.0.1:${port}`, { serve_stale_on: ['connection_refused', 'http_response_timeout', 503] }, {}, { connect: '300ms', response_header: '300ms', idle: '300ms' }))
  assert.equal((await send(gw.port, { path: '/s' })).status, 200)
  failing = true
  if (fail === 'refuse') {
    server.closeAllConnections()
    await new Promise<void>((r) => server.close(() => r()))
  }
  return gw
}

for (const fail of ['refuse', 'hang', 503] as const) {
  test(`serve_stale_on: the stored response is served when the upstream ${fail === 503 ? 'answers 503' : fail === 'refuse' ? 'refuses' : 'hangs'}`, async () => {
    const gw = await staleSetup(fail)
    const r = await send(gw.port, { path: '/s' })
    assert.equal(r.status, 200)
    assert.equal(r.body.toString(), 'stale-body')
    const expected = fail === 503 ? /^portico; fwd=stale; fwd-status=503; ttl=-?\d+$/
      : fail === 'refuse' ? /^portico; fwd=stale; detail=connection_refused; ttl=-?\d+$/
        : /^portico; fwd=stale; detail=http_response_timeout; ttl=-?\d+$/
    assert.match(header(r, 'cache-status'), expected)
    const rec = await gw.record(header(r, 'x-request-id'))
    assert.equal(rec.status, 200)
    assert.equal(rec.cache, header(r, 'cache-status'))
  })
}

test('without serve_stale_on or stale-if-error the error goes to the client', async () => {
  const o = await origin((_req, res, n) => {
    res.writeHead(n === 1 ? 200 : 503, { 'cache-control': 'max-age=0' })
    res.end('x')
  })
  const gw = await env.gateway(cached(o.url))
  await send(gw.port, { path: '/e' })
  assert.equal((await send(gw.port, { path: '/e' })).status, 503)
})

test('stale-if-error in the response allows serving it stale on a 500', async () => {
  const o = await origin((_req, res, n) => {
    res.writeHead(n === 1 ? 200 : 500, { 'cache-control': 'max-age=0, stale-if-error=60' })
    res.end(n === 1 ? 'good' : 'bad')
  })
  const gw = await env.gateway(cached(o.url))
  await send(gw.port, { path: '/sie' })
  const r = await send(gw.port, { path: '/sie' })
  assert.equal(r.status, 200)
  assert.equal(r.body.toString(), 'good')
})

test('collapsing: 100 concurrent misses make exactly 1 upstream request', async () => {
  const o = await origin((_req, res) => {
    setTimeout(() => {
      res.writeHead(200, { 'cache-control': 'max-age=60' })
      res.end('collapsed')
    }, 100)
  })
  const gw = await env.gateway(cached(o.url))
  const agent = new http.Agent({ keepAlive: true, maxSockets: 200 })
  env.defer(() => agent.destroy())
  const replies = await Promise.all(Array.from({ length: 100 }, () => send(gw.port, { path: '/c', agent })))
  assert.ok(replies.every((r) => r.status === 200 && r.body.toString() === 'collapsed'))
  assert.equal(o.count('/c'), 1)
  assert.equal(replies.filter((r) => /collapsed/.test(header(r, 'cache-status'))).length, 99)
})

test('collapsing: when the response is not storable, each waiting request goes upstream', async () => {
  const o = await origin((_req, res) => {
    setTimeout(() => {
      res.writeHead(200, { 'cache-control': 'no-store' })
      res.end('private')
    }, 50)
  })
  const gw = await env.gateway(cached(o.url))
  const replies = await Promise.all(Array.from({ length: 5 }, () => send(gw.port, { path: '/ns' })))
  assert.ok(replies.every((r) => r.status === 200))
  assert.equal(o.count('/ns'), 5)
})

test('size bounds: an object over max_object_size is passed through and not stored; the store evicts by total bytes', async () => {
  const o = await origin((req, res) => {
    const n = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('n'))
    const sized = req.url?.includes('cl=1') ? { 'content-length': String(n) } : {}
    res.writeHead(200, { 'cache-control': 'max-age=60', ...sized })
    res.end(Buffer.alloc(n, 97))
  })
  const gw = await env.gateway(cached(o.url, { max_object_size: '10KiB' }, { cache: { max_size: '64KiB' } }))
  // Content-Length over the limit: known at once. Chunked: dropped once the body passes the limit.
  const big = await send(gw.port, { path: '/b?n=20000&cl=1' })
  assert.equal(big.body.length, 20000)
  assert.doesNotMatch(header(big, 'cache-status'), /stored/)
  await send(gw.port, { path: '/b?n=20000&cl=1' })
  assert.equal(o.count('/b?n=20000&cl=1'), 2)
  assert.equal((await send(gw.port, { path: '/b?n=20000' })).body.length, 20000)
  // Once the upstream exchange is over, a store of the body would have happened.
  await gw.settled()
  assert.deepEqual(await storedVariants(gw, '/b?n=20000'), [])
  assert.match(header(await send(gw.port, { path: '/b?n=20000' }), 'cache-status'), /uri-miss/)
  assert.equal(o.count('/b?n=20000'), 2)
  for (let i = 0; i < 10; i++) await send(gw.port, { path: `/b?n=9000&i=${i}` })
  const store = gw.gateway.runtime.cache.store
  assert.ok(store.size <= 64 * 1024, `store holds ${store.size} bytes`)
  assert.ok(store.count < 10, `store holds ${store.count} entries`)
  assert.match(header(await send(gw.port, { path: '/b?n=9000&i=9' }), 'cache-status'), /hit/)
  assert.match(header(await send(gw.port, { path: '/b?n=9000&i=0' }), 'cache-status'), /uri-miss/)
})

test('a 20 MB body streams to the first client while it is stored, then comes from the store', async () => {
  const size = 20 * 1024 * 1024
  const o = await origin((_req, res) => {
    res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': String(size) })
    const chunk = Buffer.alloc(64 * 1024, 98)
    let sent = 0
    const pump = (): void => {
      while (sent < size) {
        sent += chunk.length
        if (!res.write(chunk)) {
          res.once('drain', pump)
          return
        }
      }
      res.end()
    }
    pump()
  })
  const gw = await env.gateway(cached(o.url, { max_object_size: '32MiB' }))
  const a = await send(gw.port, { path: '/big', discardBody: true })
  assert.equal(a.bytes, size)
  assert.match(header(a, 'cache-status'), /stored/)
  assert.equal((await whenStored(gw, '/big')).bodySize, size)
  const b = await send(gw.port, { path: '/big', discardBody: true })
  assert.equal(b.bytes, size)
  assert.match(header(b, 'cache-status'), /^portico; hit/)
  assert.equal(o.count('/big'), 1)
})

test('HEAD is answered from a stored GET response', async () => {
  const o = await origin((_req, res) => {
    res.writeHead(200, { 'cache-control': 'max-age=60' })
    res.end('hello')
  })
  const gw = await env.gateway(cached(o.url))
  await send(gw.port, { path: '/h' })
  const h = await send(gw.port, { path: '/h', method: 'HEAD' })
  assert.equal(h.status, 200)
  assert.equal(h.body.length, 0)
  assert.equal(header(h, 'content-length'), '5')
  assert.match(header(h, 'cache-status'), /hit/)
  assert.equal(o.count('/h'), 1)
})

test('no-store and private responses are not stored', async () => {
  const o = await origin((req, res) => {
    res.writeHead(200, { 'cache-control': req.url === '/ns' ? 'no-store' : 'private, max-age=60' })
    res.end('x')
  })
  const gw = await env.gateway(cached(o.url))
  for (const p of ['/ns', '/pv']) {
    const a = await send(gw.port, { path: p })
    assert.equal(header(a, 'cache-status'), 'portico; fwd=uri-miss; fwd-status=200')
    await send(gw.port, { path: p })
    assert.equal(o.count(p), 2)
  }
})

test('a request with Authorization is stored only when the response says public or s-maxage', async () => {
  const o = await origin((req, res) => {
    res.writeHead(200, { 'cache-control': req.url === '/plain' ? 'max-age=60' : req.url === '/pub' ? 'public, max-age=60' : 's-maxage=60' })
    res.end('x')
  })
  const gw = await env.gateway(cached(o.url))
  for (const [p, stored] of [['/plain', false], ['/pub', true], ['/smax', true]] as const) {
    await send(gw.port, { path: p, headers: { authorization: 'Bearer t' } })
    await send(gw.port, { path: p, headers: { authorization: 'Bearer t' } })
    assert.equal(o.count(p), stored ? 1 : 2, p)
  }
})

test('stale-while-revalidate: the stale response is served at once and refreshed once in the background', async (t) => {
  freezeWallClock(t)
  // The refresh's answer waits until the stale responses were served, so none of them can see it.
  let answerRefresh = (): void => {}
  const refreshHeld = new Promise<void>((resolve) => { answerRefresh = resolve })
  const o = await origin((_req, res, n) => {
    const answer = (): void => {
      res.writeHead(200, { 'cache-control': 'max-age=1, stale-while-revalidate=60', server: 'internal-app/3.1' })
      res.end(`v${n}`)
    }
    if (n === 1) answer()
    else void refreshHeld.then(answer)
  })
  const gw = await env.gateway(cached(o.url))
  await send(gw.port, { path: '/swr' })
  await whenStored(gw, '/swr')
  t.mock.timers.tick(1100)
  const replies = await Promise.all(Array.from({ length: 5 }, () => send(gw.port, { path: '/swr' })))
  for (const r of replies) {
    assert.equal(r.body.toString(), 'v1')
    assert.equal(header(r, 'cache-status'), 'portico; hit; ttl=0; detail=stale-while-revalidate')
  }
  answerRefresh()
  await whenStored(gw, '/swr', (v) => bodyText(v) === 'v2')
  assert.equal(o.count('/swr'), 2, 'one background refresh for the five stale hits')
  const fresh = await send(gw.port, { path: '/swr' })
  assert.equal(fresh.body.toString(), 'v2')
  assert.equal(header(fresh, 'cache-status'), 'portico; hit; ttl=1')
  assert.equal(header(fresh, 'server'), '', 'the background refresh stores no upstream Server field')
})

test('POST /cache/purge removes one URL or a prefix', async () => {
  const o = await origin((req, res) => {
    res.writeHead(200, { 'cache-control': 'max-age=60' })
    res.end(req.url)
  })
  const gw = await env.gateway(cached(o.url, {}, { admin: { address: '127.0.0.1:0' } }))
  for (const p of ['/a/1', '/a/2', '/b']) await send(gw.port, { path: p })
  const admin = gw.gateway.admin?.address?.port as number
  const host = `127.0.0.1:${gw.port}`
  const one = await send(admin, { path: '/cache/purge', method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ url: `http://${host}/b` }) })
  assert.equal(one.status, 200)
  assert.deepEqual(one.json(), { purged: 1 })
  const pre = await send(admin, { path: '/cache/purge', method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prefix: `http://${host}/a/` }) })
  assert.deepEqual(pre.json(), { purged: 2 })
  assert.equal((await send(admin, { path: '/cache/purge', method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status, 400)
  assert.match(header(await send(gw.port, { path: '/a/1' }), 'cache-status'), /uri-miss/)
})

test('a route without cache.enabled has no Cache-Status and stores nothing', async () => {
  const o = await origin((_req, res) => {
    res.writeHead(200, { 'cache-control': 'max-age=60' })
    res.end('x')
  })
  const gw = await env.gateway(cached(o.url, { enabled: false }))
  const a = await send(gw.port, { path: '/' })
  await send(gw.port, { path: '/' })
  assert.equal(header(a, 'cache-status'), '')
  assert.equal(o.count('/'), 2)
})

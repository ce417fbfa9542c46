// DNS re-resolution: a local DNS server on loopback whose record changes; the watcher follows within the TTL bound.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { isWatchedName, NameWatcher, resolveName, type NameUpdate } from '../../src/upstream/dns.ts'
import { startDnsServer } from '../doctor/probes/dns-server.ts'

// No system lookup fallback in these tests: names are only ever asked of the loopback DNS server.
const settings = { minTtlMs: 100, maxTtlMs: 300, graceMs: 400 }

function collect(): { updates: NameUpdate[]; next: (pred: (u: NameUpdate) => boolean, ms: number) => Promise<NameUpdate>; push: (u: NameUpdate) => void } {
  const updates: NameUpdate[] = []
  const waiters: { pred: (u: NameUpdate) => boolean; resolve: (u: NameUpdate) => void }[] = []
  return {
    updates,
    push(u) {
      updates.push(u)
      for (const w of [...waiters]) if (w.pred(u)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(u) }
    },
    next(pred, ms) {
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no matching update within ${ms}ms; got ${JSON.stringify(updates)}`)), ms)
        waiters.push({ pred, resolve: (u) => { clearTimeout(t); resolve(u) } })
      })
    },
  }
}

test('resolveName returns A and AAAA records with the smallest TTL', async (t) => {
  const server = await startDnsServer({ 'app.test': { a: ['127.0.0.2', '127.0.0.3'], aaaa: ['::1'], ttl: 7 } })
  t.after(() => server.close())
  const r = await resolveName(server.resolver, 'app.test', 1000, null)
  assert.deepEqual(r.addresses.sort(), ['127.0.0.2', '127.0.0.3', '::1'])
  assert.equal(r.ttlMs, 7000)
})

test('a changed record is followed within the TTL bound', async (t) => {
  const table: Record<string, { a: string[]; ttl: number } | 'servfail'> = { 'app.test': { a: ['127.0.0.2'], ttl: 1 } }
  const server = await startDnsServer(table)
  const c = collect()
  const w = new NameWatcher('app.test', settings, server.resolver, c.push, null)
  t.after(async () => { w.stop(); await server.close() })
  await w.start()
  assert.deepEqual(c.updates[0], { addresses: ['127.0.0.2'], error: null, changed: true })
  const changedAt = Date.now()
  table['app.test'] = { a: ['127.0.0.4', '127.0.0.5'], ttl: 1 }
  const u = await c.next((x) => x.changed, 2000)
  // TTL 1 s is clamped to max_ttl 300 ms: the change shows within one bound plus a resolution.
  assert.ok(Date.now() - changedAt <= settings.maxTtlMs + 250, `followed after ${Date.now() - changedAt}ms`)
  assert.deepEqual(u.addresses, ['127.0.0.4', '127.0.0.5'])
})

test('a name that stops resolving keeps its addresses for the grace period, reporting dns_error, then drops them', async (t) => {
  const table: Record<string, { a: string[]; ttl: number } | 'servfail'> = { 'app.test': { a: ['127.0.0.2'], ttl: 0 } }
  const server = await startDnsServer(table)
  const c = collect()
  const w = new NameWatcher('app.test', settings, server.resolver, c.push, null)
  t.after(async () => { w.stop(); await server.close() })
  await w.start()
  table['app.test'] = 'servfail'
  const failing = await c.next((x) => x.error !== null, 2000)
  assert.equal(failing.error?.type, 'dns_error')
  assert.deepEqual(failing.addresses, ['127.0.0.2'], 'last good addresses kept during the grace period')
  const dropped = await c.next((x) => x.changed && x.addresses.length === 0, 2000)
  assert.equal(dropped.error?.type, 'dns_error')
})

test('names under .invalid fail at once with ENOTFOUND, asking no server; IP literals and localhost are not watched', async (t) => {
  const server = await startDnsServer({ 'app.invalid': { a: ['127.0.0.2'] } })
  t.after(() => server.close())
  await assert.rejects(resolveName(server.resolver, 'app.invalid', 1000, null), { code: 'ENOTFOUND' })
  await assert.rejects(resolveName(server.resolver, 'x.Invalid.', 1000, async () => ['127.0.0.9']), { code: 'ENOTFOUND' })
  assert.equal(server.queries, 0)
  assert.deepEqual(['app.test', 'localhost', 'api.localhost', 'LOCALHOST.', '10.0.0.1', '::1', 'localhost.example'].map(isWatchedName),
    [true, false, false, false, false, false, true])
})

test('the watcher tells its TTL, last success, next resolution and error', async (t) => {
  const table: Record<string, { a: string[]; ttl: number } | 'servfail'> = { 'app.test': { a: ['127.0.0.2'], ttl: 7 } }
  const server = await startDnsServer(table)
  const c = collect()
  const w = new NameWatcher('app.test', { minTtlMs: 50, maxTtlMs: 100, graceMs: 1000 }, server.resolver, c.push, null)
  t.after(async () => { w.stop(); await server.close() })
  assert.equal(w.resolvedAt, 0)
  await w.start()
  assert.equal(w.ttlMs, 7000)
  assert.ok(Math.abs(w.resolvedAt - Date.now()) < 100)
  assert.ok(w.nextAt !== null && Math.abs(w.nextAt - (Date.now() + 100)) < 50, 'next resolution at max_ttl')
  // Read through a function: an assertion on the getter would narrow it for the rest of the test.
  const error = () => w.error
  assert.equal(error(), null)
  table['app.test'] = 'servfail'
  await c.next((u) => u.error !== null, 1000)
  assert.equal(error()?.type, 'dns_error')
  assert.match(error()?.detail ?? '', /app\.test/)
  assert.equal(w.ttlMs, 7000, 'the last good TTL stays')
  w.stop()
  assert.equal(w.nextAt, null)
})

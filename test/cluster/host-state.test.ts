// The primary's host-wide state, in one process: one DNS query per name and TTL for every
// asker, and the fetch leases of cache keys.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { HostResolver } from '../../src/cluster/dns-cache.ts'
import { LeaseTable } from '../../src/cluster/leases.ts'
import type { StoreEntry } from '../../src/cache/store.ts'
import type { NameResolver } from '../../src/upstream/dns.ts'

/** A resolver that counts its queries and answers after `delayMs`. */
function countingResolver(answers: Record<string, { address: string; ttl: number }[]>, delayMs = 20): NameResolver & { queries: string[] } {
  const queries: string[] = []
  const ask = (kind: string, host: string) => {
    queries.push(`${kind} ${host}`)
    return new Promise<{ address: string; ttl: number }[]>((resolve, reject) => setTimeout(() => {
      const a = answers[`${kind} ${host}`]
      if (a) resolve(a)
      else reject(Object.assign(new Error(`query${kind} ENOTFOUND ${host}`), { code: 'ENOTFOUND' }))
    }, delayMs))
  }
  return { queries, resolve4: (h) => ask('A', h), resolve6: (h) => ask('AAAA', h) }
}

test('one query per name and TTL, shared by every asker; the TTL handed out is what is left', async (t) => {
  t.mock.timers.enable({ apis: ['Date'], now: 1_000_000 })
  const r = countingResolver({ 'A app.test': [{ address: '127.0.0.2', ttl: 30 }] }, 0)
  const host = new HostResolver(() => r)
  // Ten workers and the primary's pool ask at once.
  const answers = await Promise.all(Array.from({ length: 11 }, () => host.resolve('A', 'app.test', undefined, 1000)))
  assert.equal(r.queries.length, 1)
  assert.deepEqual(answers[10], [{ address: '127.0.0.2', ttl: 30 }])
  t.mock.timers.tick(12_000)
  assert.deepEqual(await host.resolve('A', 'app.test', undefined, 1000), [{ address: '127.0.0.2', ttl: 18 }], 'from the cache, with 18 s left')
  assert.equal(r.queries.length, 1)
  t.mock.timers.tick(19_000)
  await host.resolve('A', 'app.test', undefined, 1000)
  assert.equal(r.queries.length, 2, 'asked again once the TTL ran out')
  assert.equal(host.queries, 2)
})

test('a failed resolution is shared too, kept for a second, and keeps its code', async (t) => {
  t.mock.timers.enable({ apis: ['Date'], now: 1_000_000 })
  const r = countingResolver({}, 0)
  const host = new HostResolver(() => r)
  const results = await Promise.allSettled([host.resolve('AAAA', 'gone.test', undefined, 1000), host.resolve('AAAA', 'gone.test', undefined, 1000)])
  assert.ok(results.every((x) => x.status === 'rejected' && (x.reason as { code: string }).code === 'ENOTFOUND'))
  assert.equal(r.queries.length, 1)
  t.mock.timers.tick(1500)
  await host.resolve('AAAA', 'gone.test', undefined, 1000).catch(() => {})
  assert.equal(r.queries.length, 2)
})

test('names asked of different servers are different questions', async () => {
  const made: Array<readonly string[] | undefined> = []
  const host = new HostResolver((servers) => {
    made.push(servers)
    return countingResolver({ 'A app.test': [{ address: '127.0.0.3', ttl: 5 }] }, 0)
  })
  await host.resolve('A', 'app.test', undefined, 1000)
  await host.resolve('A', 'app.test', ['127.0.0.1:5353'], 1000)
  assert.deepEqual(made, [undefined, ['127.0.0.1:5353']])
})

const entry: StoreEntry = { variants: [] }

test('fetch leases: the first miss fetches, the others get what it stored', () => {
  const leases = new LeaseTable()
  const got: Array<{ worker: number; granted: boolean; entry?: StoreEntry }> = []
  leases.request(1, 'k', 5000, (a) => got.push({ worker: 1, ...a }))
  leases.request(2, 'k', 5000, (a) => got.push({ worker: 2, ...a }))
  leases.request(3, 'k', 5000, (a) => got.push({ worker: 3, ...a }))
  assert.deepEqual(got, [{ worker: 1, granted: true }])
  leases.fill(leases.release(2, 'k'), entry)
  assert.equal(got.length, 1, 'only the holder releases')
  leases.fill(leases.release(1, 'k'), entry)
  assert.deepEqual(got.slice(1), [{ worker: 2, granted: false, entry }, { worker: 3, granted: false, entry }])
  assert.equal(leases.size, 0)
  assert.equal(leases.filled, 2)
})

test('fetch leases: nothing stored, a dead holder or a lapsed lease send the waiters upstream', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] })
  const leases = new LeaseTable()
  const got: Array<{ worker: number; granted: boolean; entry?: StoreEntry }> = []
  const ask = (w: number, key: string) => leases.request(w, key, 1000, (a) => got.push({ worker: w, ...a }))
  ask(1, 'a'); ask(2, 'a')
  leases.fill(leases.release(1, 'a'), undefined)
  ask(1, 'b'); ask(2, 'b')
  leases.releaseAll(1)
  ask(1, 'c'); ask(2, 'c')
  t.mock.timers.tick(1000)
  assert.deepEqual(got, [
    { worker: 1, granted: true }, { worker: 2, granted: false },
    { worker: 1, granted: true }, { worker: 2, granted: false },
    { worker: 1, granted: true }, { worker: 2, granted: false },
  ])
  ask(2, 'c')
  assert.deepEqual(got.at(-1), { worker: 2, granted: true }, 'a lapsed lease is granted anew')
})

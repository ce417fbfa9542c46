// GCRA as nginx limit_req rate= burst= nodelay: what a quiet key may send at once, the spacing after, and the fields' numbers.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { gcra, HostLimitTable, LocalStore, parseRate, type LimitDecision } from '../../src/protect/rate-limit.ts'

const fresh = (): LimitDecision => ({ allowed: false, remaining: -1, resetMs: -1, retryAfterMs: -1 })

test('a quiet key sends burst + 1 at once, then one each interval', () => {
  const p = { intervalMs: 100, burst: 2 }
  const d = fresh()
  let tat = NaN
  const admitted: boolean[] = []
  for (let i = 0; i < 4; i++) {
    const next = gcra(tat, 1000, p, d)
    admitted.push(d.allowed)
    if (d.allowed) tat = next
  }
  assert.deepEqual(admitted, [true, true, true, false])
  assert.equal(d.retryAfterMs, 100, 'one interval until the next')
  assert.equal(gcra(tat, 1099, p, d), NaN)
  assert.equal(d.allowed, false)
  const next = gcra(tat, 1100, p, d)
  assert.equal(d.allowed, true)
  assert.equal(next, 1400)
  assert.equal(d.remaining, 0)
})

test('remaining and reset count down and refill', () => {
  const p = { intervalMs: 50, burst: 3 }
  const d = fresh()
  let tat = gcra(NaN, 0, p, d)
  assert.deepEqual({ ...d }, { allowed: true, remaining: 3, resetMs: 50, retryAfterMs: 0 })
  tat = gcra(tat, 0, p, d)
  assert.equal(d.remaining, 2)
  assert.equal(d.resetMs, 100)
  gcra(tat, 1000, p, d)
  assert.equal(d.remaining, 3, 'a long pause refills the whole allowance, never more')
})

test('LocalStore keys are independent, and a sweep forgets keys whose time has passed', async () => {
  const s = new LocalStore()
  const p = { intervalMs: 1, burst: 0 }
  assert.equal(s.take('a', p).allowed, true)
  assert.equal(s.take('a', p).allowed, false)
  assert.equal(s.take('b', p).allowed, true)
  await new Promise((r) => setTimeout(r, 5))
  for (let i = 0; i < 2000; i++) s.take(`k${i}`, { intervalMs: 10_000, burst: 0 })
  assert.ok(s.size < 2002, `a and b were swept (size ${s.size})`)
})

test('rates as nginx writes them', () => {
  assert.deepEqual(parseRate('10r/s'), { perSecond: 10, intervalMs: 100, window: 1, quota: 10 })
  assert.deepEqual(parseRate('600r/m'), { perSecond: 10, intervalMs: 100, window: 60, quota: 600 })
  assert.equal(parseRate('0.5r/s').intervalMs, 2000)
  assert.throws(() => parseRate('10/s'), /expected requests per second or per minute/)
  assert.throws(() => parseRate('0r/s'), /invalid rate/)
})

test('a large clock value does not lose a request to float rounding', () => {
  const d = fresh()
  for (const now of [1048556.8866660999, 468144.71523176524, 8386663.8255618205]) {
    gcra(NaN, now, { intervalMs: 60_000, burst: 2 }, d)
    assert.equal(d.remaining, 2, `at ${now}`)
  }
})

test('the host table: each admission a worker reports pushes its key one interval; a copy keeps the later TAT', () => {
  const t = new HostLimitTable()
  assert.deepEqual(t.admit([['L', 'k', 100, 1000], ['L', 'k', 100, 1000], ['L', 'j', 50, 1000]]), [['L', 'k', 1200], ['L', 'j', 1050]])
  assert.deepEqual(t.admit([['L', 'k', 100, 5000]]), [['L', 'k', 5100]], 'a TAT in the past starts from the admission')
  const reports: Array<[string, string, number, number]> = []
  const stores = new Map<string, LocalStore>()
  const feed = { admitted: (id: string, key: string, i: number, at: number) => { reports.push([id, key, i, at]) }, subscribe: (id: string, s: LocalStore) => { stores.set(id, s) } }
  const s = new LocalStore(100, { id: 'L', feed })
  assert.equal(stores.get('L'), s)
  const p = { intervalMs: 60_000, burst: 1 }
  assert.equal(s.take('k', p).allowed, true)
  assert.equal(reports.length, 1)
  assert.ok(Math.abs(reports[0][3] - Date.now()) < 1000, 'times are ms since the epoch, alike in every process')
  s.apply('k', reports[0][3] + 10 * 60_000)
  assert.equal(s.take('k', p).allowed, false, 'the host\'s later TAT holds')
  s.apply('k', 0)
  assert.equal(s.take('k', p).allowed, false, 'an earlier TAT never lowers the copy')
})

test('burst 0: a fresh key is admitted at any clock value (allowAt is now, exactly)', () => {
  const d = fresh()
  // Clock values at which now + interval − interval > now in floating point.
  for (const [now, intervalMs] of [[33303.87384150057, 60_000], [32744.796353993188, 100 / 3], [43.66509242481609, 25]]) {
    gcra(NaN, now, { intervalMs, burst: 0 }, d)
    assert.equal(d.allowed, true, `at ${now}`)
  }
  for (let i = 0; i < 10_000; i++) {
    const now = Math.random() * 1e6
    gcra(NaN, now, { intervalMs: 60_000, burst: 0 }, d)
    assert.equal(d.allowed, true, `at ${now}`)
  }
})

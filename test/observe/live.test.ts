// The live statistics ring: counts by bucket, endpoint, cause and route; rates and
// percentiles; its memory after an hour and more of simulated 10 s buckets (an injected
// clock); and the sum of several processes' exports.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { LATENCY_BOUNDS_MS, LIVE_BUCKET_MS, LIVE_BUCKETS, LiveStats, MAX_LIVE_SERIES, mergeLiveExports, OTHER, percentile, summarizeLive, type LiveRequest } from '../../src/observe/live.ts'

const T0 = Date.UTC(2026, 11, 5, 12, 0, 0)

function req(at: number, fields: Partial<LiveRequest> = {}): LiveRequest {
  return { route: 'main', upstream: 'app', endpoint: '10.0.0.1:80', error: null, cache: null, startedAt: at, ...fields }
}

test('counts land in the bucket of the request end, by endpoint, cause and route', () => {
  let now = T0 + 5_000
  const live = new LiveStats(() => now)
  live.observe(req(T0), 12)
  live.observe(req(T0 + 1000, { error: 'connection_refused', endpoint: '10.0.0.2:80' }), 1)
  live.observe(req(T0 + 2000, { error: 'http_response_timeout', endpoint: '10.0.0.2:80' }), 300)
  // Ends in the next bucket.
  live.observe(req(T0 + 9_990), 20)
  now = T0 + 15_000
  const x = live.export()
  assert.equal(x.head, Math.floor(now / LIVE_BUCKET_MS))
  const a = x.endpoints.find((e) => e.endpoint === '10.0.0.1:80')!
  const b = x.endpoints.find((e) => e.endpoint === '10.0.0.2:80')!
  assert.deepEqual(a.requests.slice(-2), [1, 1])
  assert.deepEqual(b.errors.slice(-2), [2, 0])
  assert.deepEqual(Object.keys(b.causes).sort(), ['connection_refused', 'http_response_timeout'])
  assert.equal(x.routes[0].requests.reduce((s, n) => s + n, 0), 4)
  const s = summarizeLive(x)
  const sb = s.endpoints.find((e) => e.endpoint === '10.0.0.2:80')!
  assert.equal(sb.error_rate, 1)
  assert.deepEqual(sb.causes_hour, { connection_refused: 1, http_response_timeout: 1 })
  assert.equal(s.causes.connection_refused.length, LIVE_BUCKETS)
  assert.equal(s.causes.connection_refused.at(-2), 1)
  assert.equal(s.times.at(-1), x.head * LIVE_BUCKET_MS)
  // 4 requests over 50 s of complete buckets and 5 s of the head.
  const sa = s.endpoints.find((e) => e.endpoint === '10.0.0.1:80')!
  assert.ok(Math.abs(sa.requests_per_s - 2 / 55) < 1e-9, `${sa.requests_per_s}`)
})

test('percentiles interpolate inside the latency bins; no samples, no percentile', () => {
  const bins = new Array(LATENCY_BOUNDS_MS.length + 1).fill(0)
  assert.equal(percentile(bins, 0.5), null)
  bins[LATENCY_BOUNDS_MS.indexOf(10)] = 100 // 100 samples in (7.5, 10]
  assert.equal(percentile(bins, 0.5), 8.75)
  bins[LATENCY_BOUNDS_MS.length] = 1 // one above 60 s
  assert.equal(percentile(bins, 1), 60_000)
})

test('per route: cache hit ratio (hits and stale over lookups, bypass not counted) and refusals', () => {
  const live = new LiveStats(() => T0)
  live.observe(req(T0 - 1000, { error: 'http_request_denied', endpoint: null }), 0.1)
  live.observe(req(T0 - 1000, { cache: 'Portico; hit' }), 1)
  live.observe(req(T0 - 1000, { cache: 'Portico; fwd=miss; stored' }), 1)
  live.observe(req(T0 - 1000, { cache: 'Portico; fwd=method' }), 1)
  const r = summarizeLive(live.export()).routes[0]
  assert.equal(r.cache_lookups_hour, 2)
  assert.equal(r.cache_hits_hour, 1)
  assert.equal(r.cache_hit_ratio, 0.5)
  assert.equal(r.requests_hour, 4)
  assert.deepEqual([r.denied_window, r.denied_hour], [1, 1])
})

test('memory stays bounded after one hour (and three) of simulated buckets; old counts leave the ring', () => {
  let now = T0
  const live = new LiveStats(() => now)
  const causes = ['connection_refused', 'http_response_timeout', 'connection_timeout', 'connection_terminated']
  let sizeAfterHour = 0
  // Three hours of 10 s buckets, 20 requests a bucket over 10 endpoints and 5 routes.
  for (let b = 0; b < 3 * LIVE_BUCKETS; b++) {
    for (let i = 0; i < 20; i++) {
      live.observe(req(now, { endpoint: `10.0.0.${i % 10}:80`, route: `r${i % 5}`, error: i % 4 === 0 ? causes[(b + i) % 4] : null }), 5)
    }
    now += LIVE_BUCKET_MS
    if (b === LIVE_BUCKETS - 1) sizeAfterHour = live.memoryBytes()
  }
  assert.equal(live.memoryBytes(), sizeAfterHour, 'no growth after the first hour')
  // The figure docs/dashboard.md states: per endpoint 2 × 1440 B + 696 B latency + 1440 B a cause seen; per route 5760 B.
  assert.equal(sizeAfterHour, 10 * (2 * 1440 + 696) + (10 * 2 * 1440) + 5 * 5760)
  const x = live.export(now)
  const total = x.endpoints.reduce((s, e) => s + e.requests.reduce((a, n) => a + n, 0), 0)
  // The head (the bucket of `now`) has just started: the hour before it holds 359 buckets of 20.
  assert.equal(total, 20 * (LIVE_BUCKETS - 1), 'the ring holds exactly the last hour')
  // An hour of silence empties it.
  now += 3600_000
  assert.equal(live.export(now).endpoints.reduce((s, e) => s + e.requests.reduce((a, n) => a + n, 0), 0), 0)
  assert.equal(live.memoryBytes(), sizeAfterHour, 'the arrays are kept and zeroed, not grown')
})

test('new endpoint keys beyond the cap fold into (other): the ring cannot grow with the keys', () => {
  const live = new LiveStats(() => T0)
  for (let i = 0; i < MAX_LIVE_SERIES + 500; i++) live.observe(req(T0 - 1000, { endpoint: `10.${i >> 8}.${i & 255}.1:80`, route: `r${i}` }), 1)
  assert.deepEqual(live.seriesCount, { endpoints: MAX_LIVE_SERIES + 1, routes: MAX_LIVE_SERIES + 1 })
  const other = live.export().endpoints.find((e) => e.endpoint === OTHER)!
  assert.equal(other.requests.reduce((a, n) => a + n, 0), 500)
  const bound = (MAX_LIVE_SERIES + 1) * (2 * 1440 + 696) + (MAX_LIVE_SERIES + 1) * 5760
  assert.equal(live.memoryBytes(), bound)
})

test('exports of several processes sum bucket by bucket, aligned on the newest', () => {
  const a = new LiveStats(() => T0)
  const b = new LiveStats(() => T0 + LIVE_BUCKET_MS)
  a.observe(req(T0 - 1000, { error: 'connection_refused' }), 1)
  b.observe(req(T0 - 1000, { error: 'connection_refused' }), 1)
  b.observe(req(T0 + LIVE_BUCKET_MS - 1000), 1)
  const sum = mergeLiveExports([a.export(), b.export()])
  assert.equal(sum.head, Math.floor((T0 + LIVE_BUCKET_MS) / LIVE_BUCKET_MS))
  const e = sum.endpoints[0]
  // a's failure and b's, both in the bucket before a's head; b's success in a's head; b's head empty.
  assert.deepEqual(e.causes.connection_refused.slice(-3), [2, 0, 0])
  assert.deepEqual(e.requests.slice(-3), [2, 1, 0])
  assert.equal(e.latency.reduce((s, n) => s + n, 0), 3)
  // JSON round trip: plain counts, no closures.
  assert.deepEqual(JSON.parse(JSON.stringify(sum)), sum)
  assert.throws(() => mergeLiveExports([a.export(), { ...b.export(), bucket_ms: 1000 }]), /cannot be summed/)
})

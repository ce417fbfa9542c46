// Durations and sizes with units (src/config/units.ts).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { formatDuration, parseDuration, parseSize } from '../../src/config/units.ts'

test('parseDuration converts each unit to milliseconds', () => {
  assert.equal(parseDuration('250ms'), 250)
  assert.equal(parseDuration('5s'), 5000)
  assert.equal(parseDuration('2m'), 120_000)
  assert.equal(parseDuration('1h'), 3_600_000)
  assert.equal(parseDuration('1.5s'), 1500)
  assert.equal(parseDuration('0s'), 0)
  assert.equal(parseDuration(' 3s '), 3000)
  assert.equal(parseDuration('0.4ms'), 0) // rounded to a whole ms
})

test('parseDuration rejects text without a known unit', () => {
  for (const bad of ['5', '5 sec', '5sec', 's', '-1s', '1d', '', '1.s', '5S']) {
    assert.throws(() => parseDuration(bad), (e: unknown) => e instanceof RangeError && e.message.startsWith(`invalid duration "${bad}"`), bad)
  }
})

test('formatDuration gives the shortest exact form and round-trips', () => {
  assert.equal(formatDuration(4000), '4s')
  assert.equal(formatDuration(120_000), '2m')
  assert.equal(formatDuration(7_200_000), '2h')
  assert.equal(formatDuration(1500), '1500ms')
  assert.equal(formatDuration(0), '0ms')
  for (const ms of [0, 1, 999, 1000, 61_000, 60_000, 3_600_000, 5_400_000]) assert.equal(parseDuration(formatDuration(ms)), ms)
})

test('parseSize: binary units are powers of 1024, decimal ones powers of 1000', () => {
  assert.equal(parseSize('64KiB'), 65_536)
  assert.equal(parseSize('1MiB'), 1_048_576)
  assert.equal(parseSize('1GiB'), 1024 ** 3)
  assert.equal(parseSize('10MB'), 10_000_000)
  assert.equal(parseSize('2kb'), 2000)
  assert.equal(parseSize('1GB'), 1e9)
  assert.equal(parseSize('512'), 512)
  assert.equal(parseSize('512B'), 512)
  assert.equal(parseSize('1.5KiB'), 1536)
  assert.equal(parseSize('16 KiB'), 16_384)
  assert.equal(parseSize(4096), 4096)
})

test('parseSize rejects unknown units, negatives and fractional byte counts', () => {
  for (const bad of ['16 kilos', 'KiB', '-1', '1TiB', '']) {
    assert.throws(() => parseSize(bad), (e: unknown) => e instanceof RangeError && e.message.startsWith(`invalid size "${bad}"`), bad)
  }
  for (const bad of [1.5, -1, Number.NaN]) assert.throws(() => parseSize(bad), RangeError)
})

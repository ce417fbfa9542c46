// SlotSet: O(1) add/delete/has for members that come and go at request rate, without V8's
// hash tables (which kept churned members alive for the scavenger).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { SlotSet } from '../../src/lib/slot-set.ts'

test('add, has, delete and size, with the last member moved into a freed slot', () => {
  const s = new SlotSet<{ id: number }>()
  const [a, b, c] = [{ id: 1 }, { id: 2 }, { id: 3 }]
  s.add(a)
  s.add(b)
  s.add(c)
  s.add(b) // already in: nothing changes
  assert.equal(s.size, 3)
  assert.equal(s.delete(a), true)
  assert.equal(s.delete(a), false, 'a second delete finds nothing')
  assert.equal(s.has(a), false)
  assert.equal(s.has(c), true, 'the member moved into the freed slot is still found')
  assert.deepEqual([...s].map((m) => m.id).sort(), [2, 3])
  assert.equal(s.delete(c), true)
  assert.deepEqual([...s], [b])
  s.add(a)
  assert.deepEqual([...s].map((m) => m.id).sort(), [1, 2])
})

test('an object may be in two sets at once', () => {
  const one = new SlotSet<object>()
  const two = new SlotSet<object>()
  const x = {}
  const y = {}
  one.add(y)
  one.add(x)
  two.add(x)
  one.delete(y) // moves x to slot 0 of `one` only
  assert.equal(one.has(x), true)
  assert.equal(two.has(x), true)
  two.delete(x)
  assert.equal(one.has(x), true)
  assert.equal(two.has(x), false)
})

test('iteration sees the members when it starts, so members may leave during it', () => {
  const s = new SlotSet<{ n: number }>()
  const members = Array.from({ length: 5 }, (_, n) => ({ n }))
  for (const m of members) s.add(m)
  const seen: number[] = []
  for (const m of s) {
    seen.push(m.n)
    s.delete(m)
  }
  assert.deepEqual(seen.sort(), [0, 1, 2, 3, 4])
  assert.equal(s.size, 0)
})

test('clear removes every member, which may be added again', () => {
  const s = new SlotSet<object>()
  const x = {}
  s.add(x)
  s.add({})
  s.clear()
  assert.equal(s.size, 0)
  assert.equal(s.has(x), false)
  s.add(x)
  assert.equal(s.has(x), true)
  assert.equal(s.size, 1)
})

test('take empties the set and hands back its members; add says whether it added', () => {
  const s = new SlotSet<object>()
  const x = {}
  const y = {}
  assert.equal(s.add(x), true)
  assert.equal(s.add(x), false)
  s.add(y)
  const taken = s.take()
  assert.deepEqual(taken, [x, y])
  assert.equal(s.size, 0)
  assert.equal(s.has(x), false)
  s.add(y)
  assert.deepEqual(taken, [x, y], 'the taken array is no longer the set\'s')
})

// Address ranges: IPv4, IPv6, IPv4-mapped peers, `all`, and the problems a config gets for bad ranges.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { canonicalAddress, cidrProblem, CidrList } from '../../src/lib/cidr.ts'

test('IPv4 ranges match on the prefix bits only', () => {
  const l = new CidrList(['10.0.0.0/8', '192.168.1.7', '172.16.0.0/12'])
  assert.equal(l.contains('10.255.0.1'), true)
  assert.equal(l.contains('11.0.0.1'), false)
  assert.equal(l.contains('192.168.1.7'), true)
  assert.equal(l.contains('192.168.1.8'), false)
  assert.equal(l.contains('172.31.255.255'), true)
  assert.equal(l.contains('172.32.0.0'), false)
})

test('an IPv4-mapped IPv6 peer matches IPv4 ranges, and not IPv6 ones by accident', () => {
  const l = new CidrList(['127.0.0.0/8'])
  assert.equal(l.contains('::ffff:127.0.0.2'), true)
  assert.equal(l.contains('::1'), false)
  assert.equal(canonicalAddress('::ffff:10.1.2.3'), '10.1.2.3')
  assert.equal(canonicalAddress('2001:db8::1'), '2001:db8::1')
})

test('IPv6 ranges, with :: anywhere and an embedded IPv4 tail', () => {
  const l = new CidrList(['2001:db8::/32', '::1', 'fe80::/10'])
  assert.equal(l.contains('2001:db8:ffff::9'), true)
  assert.equal(l.contains('2001:db9::1'), false)
  assert.equal(l.contains('::1'), true)
  assert.equal(l.contains('::2'), false)
  assert.equal(l.contains('fe80::1%eth0'), true)
  assert.equal(l.contains('10.0.0.1'), false, 'no IPv4 range listed')
  assert.equal(new CidrList(['::ffff:0:0/96']).contains('::ffff:1.2.3.4'), false, 'a mapped peer is read as IPv4')
})

test('all matches every address of both families; nothing else matches garbage', () => {
  const all = new CidrList(['all'])
  for (const a of ['0.0.0.0', '255.255.255.255', '::', '2001:db8::1', '::ffff:1.2.3.4']) assert.equal(all.contains(a), true, a)
  assert.equal(all.contains('unknown'), false)
  assert.equal(all.contains(''), false)
})

test('problems name what is wrong: not an address, prefix too long, host bits set', () => {
  assert.equal(cidrProblem('10.0.0.0/8'), null)
  assert.equal(cidrProblem('all'), null)
  assert.match(cidrProblem('10.0.0.300/8') ?? '', /invalid address range "10.0.0.300\/8": expected an IPv4 or IPv6 address/)
  assert.match(cidrProblem('10.0.0.0/33') ?? '', /prefix length of an IPv4 range is 0 to 32/)
  assert.match(cidrProblem('2001:db8::/129') ?? '', /prefix length of an IPv6 range is 0 to 128/)
  assert.match(cidrProblem('10.0.0.1/8') ?? '', /host bits are set; the network is 10\.0\.0\.0\/8/)
  assert.match(cidrProblem('example.com') ?? '', /expected an IPv4 or IPv6 address/)
})

// The real client address (nginx realip with real_ip_recursive on): which fields are read, from whom, and where the walk stops.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { CidrList } from '../../src/lib/cidr.ts'
import { clientAddress, forwardedFor, xForwardedFor, type TrustedProxies } from '../../src/protect/client-ip.ts'

const trusted: TrustedProxies = { list: new CidrList(['127.0.0.1', '10.0.0.0/8']), header: 'x-forwarded-for' }

test('an untrusted peer: its X-Forwarded-For is never read', () => {
  const a = clientAddress('192.0.2.50', { 'x-forwarded-for': '203.0.113.1' }, trusted)
  assert.deepEqual(a, { ip: '192.0.2.50', peer: '192.0.2.50', trusted: false })
  assert.deepEqual(clientAddress('::ffff:127.0.0.1', { 'x-forwarded-for': '1.2.3.4' }, null), { ip: '127.0.0.1', peer: '127.0.0.1', trusted: false })
})

test('a trusted peer: walked from the right past trusted hops; the first untrusted one is the client', () => {
  const a = clientAddress('::ffff:127.0.0.1', { 'x-forwarded-for': '198.51.100.7, 203.0.113.9, 10.1.1.1, 10.2.2.2' }, trusted)
  assert.deepEqual(a, { ip: '203.0.113.9', peer: '127.0.0.1', trusted: true }, 'the spoofable left entry is never reached')
})

test('several X-Forwarded-For fields are one list; ports are dropped', () => {
  assert.deepEqual(xForwardedFor(['1.1.1.1, 2.2.2.2:8080', '[2001:db8::1]:443']), ['1.1.1.1', '2.2.2.2', '2001:db8::1'])
  const a = clientAddress('127.0.0.1', { 'x-forwarded-for': ['203.0.113.9', '10.0.0.5'] } as never, trusted)
  assert.equal(a.ip, '203.0.113.9')
})

test('every hop trusted: the leftmost is the client; no field: the peer is', () => {
  assert.equal(clientAddress('127.0.0.1', { 'x-forwarded-for': '10.0.0.9, 10.0.0.8' }, trusted).ip, '10.0.0.9')
  assert.equal(clientAddress('127.0.0.1', {}, trusted).ip, '127.0.0.1')
})

test('an entry that is not an address ends the walk at the last trusted hop', () => {
  assert.equal(clientAddress('127.0.0.1', { 'x-forwarded-for': '203.0.113.9, garbage, 10.0.0.8' }, trusted).ip, '10.0.0.8')
  assert.equal(clientAddress('127.0.0.1', { 'x-forwarded-for': 'unknown' }, trusted).ip, '127.0.0.1')
})

test('RFC 7239 Forwarded: for= nodes, quoted IPv6 with port, obfuscated and missing nodes', () => {
  assert.deepEqual(forwardedFor('for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711", for=_hidden, proto=https'),
    ['192.0.2.60', '2001:db8:cafe::17', '_hidden', 'unknown'])
  const fwd: TrustedProxies = { list: trusted.list, header: 'forwarded' }
  assert.equal(clientAddress('127.0.0.1', { forwarded: 'for=198.51.100.1, for="[2001:db8::5]", For=10.0.0.3' }, fwd).ip, '2001:db8::5')
  assert.equal(clientAddress('127.0.0.1', { forwarded: 'for=198.51.100.1, for=_hidden, for=10.0.0.3' }, fwd).ip, '10.0.0.3')
  assert.equal(clientAddress('127.0.0.1', { 'x-forwarded-for': '198.51.100.1' }, fwd).ip, '127.0.0.1', 'only the configured field is read')
})

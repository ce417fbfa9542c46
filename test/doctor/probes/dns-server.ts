// A tiny DNS server on loopback UDP for tests: answers A/AAAA from a table, NXDOMAIN, SERVFAIL or nothing (RFC 1035 §4).
import dgram from 'node:dgram'
import net from 'node:net'
import dns from 'node:dns'
import type { LookupAddress, LookupFn } from '../../../src/doctor/probes/dns.ts'

export interface TestDnsServer {
  port: number
  /** A Resolver that asks only this server. */
  resolver: dns.promises.Resolver
  /** A getaddrinfo stand-in answering from this server (A then AAAA). */
  lookup: LookupFn
  queries: number
  close(): Promise<void>
}

type Answer = { a?: string[]; aaaa?: string[]; ttl?: number } | 'servfail' | 'silent'

function encodeName(name: string): Buffer {
  return Buffer.concat([...name.replace(/\.$/, '').split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0])])
}

function ipBytes(ip: string): Buffer {
  if (net.isIPv4(ip)) return Buffer.from(ip.split('.').map(Number))
  const sl = new net.SocketAddress({ address: ip, family: 'ipv6' })
  const parts = sl.address.split('::')
  const head = parts[0] ? parts[0].split(':') : []
  const tail = parts[1] ? parts[1].split(':') : []
  const groups = parts.length === 2 ? [...head, ...Array(8 - head.length - tail.length).fill('0'), ...tail] : head
  const b = Buffer.alloc(16)
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2))
  return b
}

/** Starts the server; names not in `table` get NXDOMAIN. */
export async function startDnsServer(table: Record<string, Answer> = {}): Promise<TestDnsServer> {
  const socket = dgram.createSocket('udp4')
  const state = { queries: 0 }
  socket.on('message', (msg, rinfo) => {
    state.queries++
    let off = 12
    const labels: string[] = []
    while (msg[off] !== 0 && off < msg.length) {
      labels.push(msg.subarray(off + 1, off + 1 + msg[off]).toString())
      off += msg[off] + 1
    }
    off++
    const qtype = msg.readUInt16BE(off)
    const question = msg.subarray(12, off + 4)
    const name = labels.join('.').toLowerCase()
    const entry = table[name]
    if (entry === 'silent') return
    const rcode = entry === 'servfail' ? 2 : entry === undefined ? 3 : 0
    const ips = entry && typeof entry === 'object' ? (qtype === 1 ? entry.a ?? [] : qtype === 28 ? entry.aaaa ?? [] : []) : []
    const header = Buffer.alloc(12)
    header.writeUInt16BE(msg.readUInt16BE(0), 0)
    header.writeUInt16BE(0x8180 | rcode, 2)
    header.writeUInt16BE(1, 4)
    header.writeUInt16BE(ips.length, 6)
    const answers = ips.map((ip) => {
      const rdata = ipBytes(ip)
      const rr = Buffer.alloc(10)
      rr.writeUInt16BE(qtype, 0)
      rr.writeUInt16BE(1, 2)
      rr.writeUInt32BE(typeof entry === 'object' ? entry.ttl ?? 60 : 60, 4)
      rr.writeUInt16BE(rdata.length, 8)
      return Buffer.concat([encodeName(name), rr, rdata])
    })
    socket.send(Buffer.concat([header, question, ...answers]), rinfo.port, rinfo.address)
  })
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))
  const port = socket.address().port
  const resolver = new dns.promises.Resolver({ timeout: 300, tries: 1 })
  resolver.setServers([`127.0.0.1:${port}`])
  const lookup: LookupFn = async (host) => {
    const [a, aaaa] = await Promise.allSettled([resolver.resolve4(host), resolver.resolve6(host)])
    const out: LookupAddress[] = [
      ...(a.status === 'fulfilled' ? a.value.map((address) => ({ address, family: 4 as const })) : []),
      ...(aaaa.status === 'fulfilled' ? aaaa.value.map((address) => ({ address, family: 6 as const })) : []),
    ]
    if (out.length) return out
    const err = a.status === 'rejected' ? (a.reason as NodeJS.ErrnoException) : null
    throw Object.assign(new Error(`lookup ${host} failed`), { code: err?.code === 'ENOTFOUND' ? 'ENOTFOUND' : err?.code === 'ETIMEOUT' ? 'EAI_AGAIN' : err?.code ?? 'ENOTFOUND' })
  }
  return {
    port, resolver, lookup,
    get queries() { return state.queries },
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  }
}

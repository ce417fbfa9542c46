/**
 * IP address ranges (CIDR, RFC 4632 and RFC 4291 §2.3): parsing and matching, compiled once,
 * matched on the request path without allocation for IPv4. IPv4-mapped IPv6 addresses
 * (`::ffff:10.0.0.1`, as Node reports IPv4 peers of a dual-stack socket) match IPv4 ranges.
 */
import net from 'node:net'

/** One parsed range: the network's bits and the prefix length, per family. */
interface Range {
  /** 4 for IPv4, 6 for IPv6. */
  readonly family: 4 | 6
  /** IPv4: one 32-bit word; IPv6: four. */
  readonly words: Uint32Array
  readonly bits: number
}

/**
 * Parses `"10.0.0.0/8"`, `"2001:db8::/32"`, a single address (`"192.0.2.1"`, a /32 or /128)
 * or `"all"` (every address, nginx `allow all`).
 *
 * @returns a description of what is wrong, or null when `text` is valid
 */
export function cidrProblem(text: string): string | null {
  try {
    parseRange(text)
    return null
  } catch (e) {
    return (e as Error).message
  }
}

function parseRange(text: string): Range[] {
  const t = text.trim()
  if (t === 'all') return [{ family: 4, words: new Uint32Array(1), bits: 0 }, { family: 6, words: new Uint32Array(4), bits: 0 }]
  const slash = t.indexOf('/')
  const addr = slash < 0 ? t : t.slice(0, slash)
  const family = net.isIP(addr)
  if (family === 0) throw new Error(`invalid address range "${text}": expected an IPv4 or IPv6 address with an optional /prefix, e.g. "10.0.0.0/8", "2001:db8::/32", or "all"`)
  const max = family === 4 ? 32 : 128
  let bits = max
  if (slash >= 0) {
    const p = t.slice(slash + 1)
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) throw new Error(`invalid address range "${text}": the prefix length of an IPv${family} range is 0 to ${max}`)
    bits = Number(p)
  }
  const words = family === 4 ? new Uint32Array([ipv4Word(addr)]) : ipv6Words(addr)
  // The network's host bits must be zero, as nginx warns for `allow 10.0.0.1/8`: a typo is likelier than intent.
  const masked = maskWords(words, bits)
  for (let i = 0; i < words.length; i++) {
    if (masked[i] !== words[i]) throw new Error(`invalid address range "${text}": host bits are set; the network is ${formatNetwork(family, masked)}/${bits}`)
  }
  return [{ family: family as 4 | 6, words, bits }]
}

function ipv4Word(a: string): number {
  const p = a.split('.')
  return ((Number(p[0]) << 24) | (Number(p[1]) << 16) | (Number(p[2]) << 8) | Number(p[3])) >>> 0
}

function ipv6Words(a: string): Uint32Array {
  // An embedded IPv4 tail (`::ffff:1.2.3.4`) becomes two groups.
  let s = a
  const dot = s.lastIndexOf('.')
  if (dot >= 0) {
    const colon = s.lastIndexOf(':')
    const w = ipv4Word(s.slice(colon + 1))
    s = `${s.slice(0, colon + 1)}${(w >>> 16).toString(16)}:${(w & 0xffff).toString(16)}`
  }
  const zone = s.indexOf('%')
  if (zone >= 0) s = s.slice(0, zone)
  const [head, tail] = s.includes('::') ? s.split('::') : [s, null]
  const h = head ? head.split(':') : []
  const t = tail === null ? [] : tail ? tail.split(':') : []
  const groups = tail === null ? h : [...h, ...new Array(8 - h.length - t.length).fill('0'), ...t]
  const out = new Uint32Array(4)
  for (let i = 0; i < 8; i++) out[i >> 1] = (out[i >> 1] | (parseInt(groups[i], 16) << (i & 1 ? 0 : 16))) >>> 0
  return out
}

function maskWords(words: Uint32Array, bits: number): Uint32Array {
  const out = new Uint32Array(words.length)
  for (let i = 0; i < words.length; i++) {
    const b = Math.min(32, Math.max(0, bits - 32 * i))
    out[i] = b === 0 ? 0 : (words[i] & (0xffffffff << (32 - b))) >>> 0
  }
  return out
}

function formatNetwork(family: number, words: Uint32Array): string {
  if (family === 4) return [words[0] >>> 24, (words[0] >>> 16) & 255, (words[0] >>> 8) & 255, words[0] & 255].join('.')
  const g: string[] = []
  for (const w of words) g.push((w >>> 16).toString(16), (w & 0xffff).toString(16))
  return g.join(':')
}

/**
 * A compiled list of address ranges. `contains` takes the address as Node reports it
 * (`req.socket.remoteAddress`): IPv4, IPv6, or IPv4-mapped IPv6.
 */
export class CidrList {
  readonly #v4: Array<{ net: number; mask: number }> = []
  readonly #v6: Range[] = []
  /** The ranges as written, for messages. */
  readonly source: readonly string[]

  /**
   * @param ranges CIDRs, single addresses or `all`
   * @throws {Error} naming the first invalid range (the config schema checks them first)
   */
  constructor(ranges: readonly string[]) {
    this.source = ranges
    for (const text of ranges) {
      for (const r of parseRange(text)) {
        if (r.family === 4) this.#v4.push({ net: r.words[0], mask: r.bits === 0 ? 0 : (0xffffffff << (32 - r.bits)) >>> 0 })
        else this.#v6.push(r)
      }
    }
  }

  /** Whether no range was given. */
  get empty(): boolean {
    return this.#v4.length === 0 && this.#v6.length === 0
  }

  /** Whether `address` is in one of the ranges; false for anything that is not an IP address. */
  contains(address: string): boolean {
    const a = canonicalAddress(address)
    if (a.indexOf(':') < 0) {
      if (this.#v4.length === 0 || !net.isIPv4(a)) return false
      const w = ipv4Word(a)
      for (const r of this.#v4) if (((w & r.mask) >>> 0) === r.net) return true
      return false
    }
    if (this.#v6.length === 0 || !net.isIPv6(a)) return false
    const words = ipv6Words(a)
    for (const r of this.#v6) {
      const m = maskWords(words, r.bits)
      if (m[0] === r.words[0] && m[1] === r.words[1] && m[2] === r.words[2] && m[3] === r.words[3]) return true
    }
    return false
  }
}

/**
 * The canonical text of an address for keys and logs: IPv4-mapped IPv6 becomes IPv4
 * (`::ffff:10.0.0.1` → `10.0.0.1`), so one client has one key whatever the socket family.
 */
export function canonicalAddress(address: string): string {
  return address.startsWith('::ffff:') && address.indexOf('.') > 0 ? address.slice(7) : address
}

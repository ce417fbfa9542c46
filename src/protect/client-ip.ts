/**
 * The real client address (nginx `ngx_http_realip_module` with `real_ip_recursive on`):
 * the socket's peer address, unless that peer is a trusted proxy (`trusted_proxies`); then
 * the addresses its `X-Forwarded-For` (or RFC 7239 `Forwarded`) lists are walked from the
 * right, past every trusted hop, and the first untrusted one is the client. Rules, rate
 * limits and the access log use it.
 *
 * What an untrusted client can spoof: nothing. Its own `X-Forwarded-For`/`Forwarded` is
 * never read, because the walk starts only when the socket peer is trusted. What a client
 * behind a trusted proxy can spoof: entries left of the first untrusted hop, which are
 * never reached, since the walk stops there.
 */
import type { IncomingHttpHeaders } from 'node:http'
import net from 'node:net'
import { canonicalAddress, type CidrList } from '../lib/cidr.ts'

/** Which field a trusted proxy names the client in (nginx `real_ip_header`). */
export type RealIpHeader = 'x-forwarded-for' | 'forwarded'

/** The compiled `trusted_proxies` settings. */
export interface TrustedProxies {
  readonly list: CidrList
  readonly header: RealIpHeader
}

/** The client address of a request, and whether its socket peer is a trusted proxy. */
export interface ClientAddress {
  /** The real client address (canonical: IPv4-mapped IPv6 shown as IPv4). */
  readonly ip: string
  /** The socket's peer address (canonical), the hop appended to `X-Forwarded-For`. */
  readonly peer: string
  /** Whether the peer is in `trusted_proxies`; its X-Forwarded-Proto/Host are then believed. */
  readonly trusted: boolean
}

/**
 * Finds the client address of a request.
 *
 * @param remoteAddress `req.socket.remoteAddress`
 * @param headers the request's headers (only the `real_ip_header` field is read)
 * @param trusted the compiled `trusted_proxies`, or null when none are configured
 */
export function clientAddress(remoteAddress: string, headers: IncomingHttpHeaders, trusted: TrustedProxies | null): ClientAddress {
  const peer = canonicalAddress(remoteAddress)
  if (trusted === null || !trusted.list.contains(peer)) return { ip: peer, peer, trusted: false }
  const hops = trusted.header === 'forwarded' ? forwardedFor(headers.forwarded) : xForwardedFor(headers['x-forwarded-for'])
  let ip = peer
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]
    // An entry that is not an address (`unknown`, an obfuscated `_id`, garbage) ends the walk at the last trusted hop.
    if (net.isIP(hop) === 0) break
    ip = canonicalAddress(hop)
    if (!trusted.list.contains(ip)) break
  }
  return { ip, peer, trusted: true }
}

/** The addresses of `X-Forwarded-For` fields, left to right (several fields are one list, RFC 9110 §5.3). */
export function xForwardedFor(value: string | string[] | undefined): string[] {
  if (value === undefined) return []
  const s = Array.isArray(value) ? value.join(',') : value
  const out: string[] = []
  for (const part of s.split(',')) {
    const v = stripPort(part.trim())
    if (v !== '') out.push(v)
  }
  return out
}

/** The `for=` node of each element of RFC 7239 `Forwarded` fields, left to right, without port or brackets. */
export function forwardedFor(value: string | string[] | undefined): string[] {
  if (value === undefined) return []
  const s = Array.isArray(value) ? value.join(',') : value
  const out: string[] = []
  for (const element of s.split(',')) {
    let node = ''
    for (const pair of element.split(';')) {
      const eq = pair.indexOf('=')
      if (eq < 0 || pair.slice(0, eq).trim().toLowerCase() !== 'for') continue
      node = pair.slice(eq + 1).trim()
      if (node.startsWith('"') && node.endsWith('"') && node.length >= 2) node = node.slice(1, -1)
    }
    // An element without `for=` still is a hop: it cannot be believed, so it stays in the list as unknown.
    out.push(stripPort(node) || 'unknown')
  }
  return out
}

/** `[v6]:port` → `v6`, `v4:port` → `v4`; a bare IPv6 address stays as it is. */
function stripPort(node: string): string {
  if (node.startsWith('[')) {
    const end = node.indexOf(']')
    return end > 0 ? node.slice(1, end) : node
  }
  const colon = node.indexOf(':')
  if (colon > 0 && node.indexOf(':', colon + 1) < 0) return node.slice(0, colon)
  return node
}

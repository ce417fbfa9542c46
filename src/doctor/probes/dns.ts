/** DNS probe: resolves each upstream host the way programs do (/etc/hosts first, then DNS) and straight from DNS (with TTLs), with a resolver of its own timeout, and compares. */
import dns from 'node:dns'
import { readFile } from 'node:fs/promises'
import net from 'node:net'
import type { Finding } from '../finding.ts'
import { fixes, type ProbeOutput, type Target } from './target.ts'

/** One address as a lookup returns it, in its preference order. */
export interface LookupAddress {
  address: string
  family: 4 | 6
}

/** A DNS record with its TTL in seconds. */
export interface DnsRecord {
  address: string
  ttl: number
}

/** `dns.promises.lookup(host, { all: true })`-like function; injectable for tests. */
export type LookupFn = (host: string) => Promise<LookupAddress[]>

/** The part of `dns.promises.Resolver` the probe uses; injectable for tests (e.g. one with `setServers(['127.0.0.1:<port>'])`). */
export interface ResolverLike {
  resolve4(host: string, options: { ttl: true }): Promise<DnsRecord[]>
  resolve6(host: string, options: { ttl: true }): Promise<DnsRecord[]>
}

/** Raw results of resolving one host. Times in ms. */
export interface DnsResult {
  host: string
  /** The host is an IP literal: no DNS was done. */
  literal: boolean
  /** What programs would connect to, in preference order (/etc/hosts, else the DNS answers), or the error code. */
  lookup: { addresses: LookupAddress[]; error?: string; ms: number; source?: 'hosts' }
  /** Direct DNS answers; `skipped` says why none were asked for (IP literal, `localhost` names). */
  resolver: { a: DnsRecord[]; aaaa: DnsRecord[]; errorA?: string; errorAaaa?: string; ms: number; skipped?: string }
  /** Addresses to connect to, in the order programs try them. */
  addresses: LookupAddress[]
}

/** Options of {@link probeDns}. */
export interface DnsProbeOptions {
  /** Bound for each of the two resolutions, ms. */
  timeoutMs: number
  lookup?: LookupFn
  resolver?: ResolverLike
}

/** Addresses of `host` in a hosts file (`/etc/hosts` format), in file order; empty when absent. */
export function hostsFileAnswers(text: string, host: string): LookupAddress[] {
  const name = host.toLowerCase().replace(/\.$/, '')
  const out: LookupAddress[] = []
  for (const line of text.split('\n')) {
    const [address, ...names] = line.replace(/#.*/, '').trim().split(/\s+/)
    const family = net.isIP(address ?? '')
    if (family && names.some((n) => n.toLowerCase() === name)) out.push({ address, family: family === 6 ? 6 : 4 })
  }
  return out
}

/**
 * What programs use, without getaddrinfo: /etc/hosts first (nsswitch `files dns`), then
 * the DNS answers. getaddrinfo would hold a libuv thread for the resolver's full retry
 * cycle (5 s × attempts) against a DNS server that never answers, past any timeout here.
 */
async function hostsLookup(host: string): Promise<LookupAddress[]> {
  return hostsFileAnswers(await readFile('/etc/hosts', 'utf8').catch(() => ''), host)
}

/** Rejects with `{ code: 'ETIMEOUT' }` after ms; the timer is cleared when the work settles. */
async function bounded<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`no answer within ${ms}ms`), { code: 'ETIMEOUT' })), ms)
  })
  try {
    return await Promise.race([work, timeout])
  } finally {
    clearTimeout(timer)
  }
}

function code(err: unknown): string {
  const e = err as NodeJS.ErrnoException
  return e.code ?? e.message
}

/** Names RFC 6761 §6.3 says are answered locally; asking DNS servers about them only leaks queries. */
function isLocalhostName(host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, '')
  return h === 'localhost' || h.endsWith('.localhost')
}

/**
 * Resolves `target.host` as programs do (/etc/hosts, then DNS; never getaddrinfo, whose
 * retries outlast any bound) and through a DNS resolver (`resolve4`/`resolve6` with
 * TTLs; its own timeout and one try; the target's `resolvers` when set), each bounded
 * by `timeoutMs`. IP literals skip DNS. Never throws.
 *
 * Findings: `dns.nxdomain` (dns_error), `dns.servfail` (dns_error), `dns.refused` (dns_error:
 * the DNS server's port is closed), `dns.timeout`
 * (dns_timeout), `dns.mismatch` (/etc/hosts and DNS disagree),
 * `dns.answers` (info with the answers and TTLs).
 */
export async function probeDns(target: Target, opts: DnsProbeOptions): Promise<ProbeOutput<DnsResult>> {
  const host = target.host
  const family = net.isIP(host)
  if (family) {
    const addresses: LookupAddress[] = [{ address: host, family: family === 6 ? 6 : 4 }]
    return { result: { host, literal: true, lookup: { addresses, ms: 0 }, resolver: { a: [], aaaa: [], ms: 0, skipped: 'IP literal' }, addresses }, findings: [] }
  }
  const own = opts.resolver ? null : new dns.promises.Resolver({ timeout: opts.timeoutMs, tries: 1 })
  if (own && target.resolvers?.length) own.setServers(target.resolvers)
  const resolver: ResolverLike = opts.resolver ?? (own as dns.promises.Resolver)
  const t0 = performance.now()
  const local = isLocalhostName(host)
  try {
    const resolverWork: Promise<DnsResult['resolver']> = local
      ? Promise.resolve({ a: [], aaaa: [], ms: 0, skipped: 'localhost names are answered locally (RFC 6761)' })
      : Promise.all([
          bounded(resolver.resolve4(host, { ttl: true }), opts.timeoutMs).then((r): { r: DnsRecord[]; e?: string } => ({ r }), (e) => ({ r: [] as DnsRecord[], e: code(e) })),
          bounded(resolver.resolve6(host, { ttl: true }), opts.timeoutMs).then((r): { r: DnsRecord[]; e?: string } => ({ r }), (e) => ({ r: [] as DnsRecord[], e: code(e) })),
        ]).then(([a, aaaa]) => ({ a: a.r, aaaa: aaaa.r, errorA: a.e, errorAaaa: aaaa.e, ms: performance.now() - t0 }))
    // Portico's `dns.resolvers` asks only those servers (no /etc/hosts); otherwise /etc/hosts first, like getaddrinfo.
    const lookupWork: Promise<DnsResult['lookup']> = opts.lookup
      ? bounded(opts.lookup(host), opts.timeoutMs).then(
          (addresses) => ({ addresses, ms: performance.now() - t0 }),
          (err) => ({ addresses: [] as LookupAddress[], error: code(err), ms: performance.now() - t0 }))
      : (target.resolvers?.length ? Promise.resolve([]) : hostsLookup(host)).then(async (fromHosts) => {
          if (fromHosts.length || local) {
            const addresses = fromHosts.length ? fromHosts : [{ address: '127.0.0.1', family: 4 as const }, { address: '::1', family: 6 as const }]
            return { addresses, ms: performance.now() - t0, source: 'hosts' as const }
          }
          const rs = await resolverWork
          const addresses: LookupAddress[] = [...rs.a.map((x) => ({ address: x.address, family: 4 as const })), ...rs.aaaa.map((x) => ({ address: x.address, family: 6 as const }))]
          if (addresses.length) return { addresses, ms: rs.ms }
          const errs = [rs.errorA, rs.errorAaaa].filter((e): e is string => !!e)
          const error = errs.find((e) => e === 'ETIMEOUT') ?? errs.find((e) => e === 'ESERVFAIL') ?? errs.find((e) => e !== 'ENODATA') ?? 'ENOTFOUND'
          return { addresses, error, ms: rs.ms }
        })
    const [lk, rs] = await Promise.all([lookupWork, resolverWork])
    const result: DnsResult = { host, literal: false, lookup: lk, resolver: rs, addresses: lk.addresses }
    return { result, findings: dnsFindings(target, result) }
  } finally {
    // Queries still pending past the bound must not keep the process alive.
    own?.cancel()
  }
}

function dnsFindings(target: Target, r: DnsResult): Finding[] {
  const findings: Finding[] = []
  const base = { target: target.url }
  const evidence = dnsEvidence(r)
  const errs = [r.lookup.error, r.resolver.errorA, r.resolver.errorAaaa].filter((e): e is string => !!e && e !== 'ENODATA')
  if (r.lookup.error) {
    const timedOut = errs.some((e) => e === 'ETIMEOUT' || e === 'ETIMEDOUT') || (r.lookup.error === 'EAI_AGAIN' && !errs.includes('ENOTFOUND') && !errs.includes('ESERVFAIL'))
    const servfail = errs.includes('ESERVFAIL')
    if (errs.includes('ECONNREFUSED')) {
      findings.push({ ...base, id: 'dns.refused', severity: 'critical', cause: 'dns_error', likelihood: 0.9, title: `The DNS server refuses queries for ${r.host} (nothing listens on its port)`, evidence, fix: fixes.dns(target, 'No DNS server answers at the resolver address.', true) })
    } else if (timedOut) {
      findings.push({ ...base, id: 'dns.timeout', severity: 'critical', cause: 'dns_timeout', likelihood: 0.9, title: `The resolver did not answer for ${r.host} in time`, evidence, fix: fixes.dns(target, `The DNS server did not answer within ${Math.round(r.resolver.ms || r.lookup.ms)}ms.`, true) })
    } else if (servfail) {
      findings.push({ ...base, id: 'dns.servfail', severity: 'critical', cause: 'dns_error', likelihood: 0.9, title: `DNS failed (SERVFAIL) for ${r.host}`, evidence, fix: fixes.dns(target, 'The authoritative servers for the name or the resolver are failing.') })
    } else {
      findings.push({ ...base, id: 'dns.nxdomain', severity: 'critical', cause: 'dns_error', likelihood: 0.95, title: `${r.host} does not resolve (${r.lookup.error === 'ENOTFOUND' ? 'NXDOMAIN' : r.lookup.error})`, evidence, fix: fixes.dns(target, `The name ${r.host} does not exist.`) })
    }
    return findings
  }
  if (!r.resolver.skipped) {
    const fromLookup = new Set(r.lookup.addresses.map((a) => a.address))
    const fromDns = new Set([...r.resolver.a, ...r.resolver.aaaa].map((a) => a.address))
    const same = fromLookup.size === fromDns.size && [...fromLookup].every((a) => fromDns.has(a))
    if (!same) {
      findings.push({
        ...base, id: 'dns.mismatch', severity: 'warning', cause: null, likelihood: 0.3,
        title: `/etc/hosts and DNS disagree about ${r.host}`,
        evidence: [...evidence, 'programs using getaddrinfo read /etc/hosts first; a proxy resolving through DNS (nginx `resolver`, Portico `dns.resolvers`) sees the DNS answer'],
        fix: 'Make /etc/hosts and DNS agree, or point the proxy at the address the application really listens on.',
      })
    }
  }
  findings.push({ ...base, id: 'dns.answers', severity: 'info', cause: null, likelihood: 0, title: `${r.host} resolves to ${r.addresses.map((a) => a.address).join(', ')}`, evidence, fix: '' })
  return findings
}

function dnsEvidence(r: DnsResult): string[] {
  const ms = (n: number) => `${n.toFixed(1)}ms`
  const how = r.lookup.source === 'hosts' ? '/etc/hosts' : 'lookup'
  const lines = [r.lookup.error ? `${how}(${r.host}): ${r.lookup.error} after ${ms(r.lookup.ms)}` : `${how}(${r.host}): ${r.lookup.addresses.map((a) => a.address).join(', ')} in ${ms(r.lookup.ms)}`]
  if (r.resolver.skipped) lines.push(`DNS not asked: ${r.resolver.skipped}`)
  else {
    const fmt = (recs: DnsRecord[], err?: string) => (recs.length ? recs.map((x) => `${x.address} ttl=${x.ttl}s`).join(', ') : err ?? 'none')
    lines.push(`DNS A: ${fmt(r.resolver.a, r.resolver.errorA)}`, `DNS AAAA: ${fmt(r.resolver.aaaa, r.resolver.errorAaaa)}`)
  }
  return lines
}

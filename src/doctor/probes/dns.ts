/** DNS probe: resolves each upstream host the way programs do (getaddrinfo, /etc/hosts included) and straight from DNS (with TTLs), and compares. */
import dns from 'node:dns'
import net from 'node:net'
import type { Finding } from '../finding.ts'
import { fixes, type ProbeOutput, type Target } from './target.ts'

/** One address as getaddrinfo returns it, in its preference order. */
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
  /** getaddrinfo answer in preference order, or its error code. */
  lookup: { addresses: LookupAddress[]; error?: string; ms: number }
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

const systemLookup: LookupFn = async (host) =>
  (await dns.promises.lookup(host, { all: true, order: 'verbatim' })).map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }))

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
 * Resolves `target.host` through getaddrinfo (`dns.promises.lookup`, all addresses,
 * system order) and through a DNS resolver (`resolve4`/`resolve6` with TTLs), each
 * bounded by `timeoutMs`. IP literals skip DNS. Never throws.
 *
 * Findings: `dns.nxdomain` (dns_error), `dns.servfail` (dns_error), `dns.timeout`
 * (dns_timeout), `dns.mismatch` (getaddrinfo and DNS disagree, e.g. /etc/hosts),
 * `dns.answers` (info with the answers and TTLs).
 */
export async function probeDns(target: Target, opts: DnsProbeOptions): Promise<ProbeOutput<DnsResult>> {
  const host = target.host
  const family = net.isIP(host)
  if (family) {
    const addresses: LookupAddress[] = [{ address: host, family: family === 6 ? 6 : 4 }]
    return { result: { host, literal: true, lookup: { addresses, ms: 0 }, resolver: { a: [], aaaa: [], ms: 0, skipped: 'IP literal' }, addresses }, findings: [] }
  }
  const lookup = opts.lookup ?? systemLookup
  const resolver: ResolverLike = opts.resolver ?? new dns.promises.Resolver({ timeout: opts.timeoutMs, tries: 1 })
  const t0 = performance.now()
  const lookupWork = bounded(lookup(host), opts.timeoutMs).then(
    (addresses) => ({ addresses, ms: performance.now() - t0 }),
    (err) => ({ addresses: [] as LookupAddress[], error: code(err), ms: performance.now() - t0 }),
  )
  const local = isLocalhostName(host)
  const resolverWork = local
    ? Promise.resolve({ a: [], aaaa: [], ms: 0, skipped: 'localhost names are answered locally (RFC 6761)' })
    : Promise.all([
        bounded(resolver.resolve4(host, { ttl: true }), opts.timeoutMs).then((r): { r: DnsRecord[]; e?: string } => ({ r }), (e) => ({ r: [] as DnsRecord[], e: code(e) })),
        bounded(resolver.resolve6(host, { ttl: true }), opts.timeoutMs).then((r): { r: DnsRecord[]; e?: string } => ({ r }), (e) => ({ r: [] as DnsRecord[], e: code(e) })),
      ]).then(([a, aaaa]) => ({ a: a.r, aaaa: aaaa.r, errorA: a.e, errorAaaa: aaaa.e, ms: performance.now() - t0 }))
  const [lk, rs] = await Promise.all([lookupWork, resolverWork])
  const result: DnsResult = { host, literal: false, lookup: lk, resolver: rs, addresses: lk.addresses }
  return { result, findings: dnsFindings(target, result) }
}

function dnsFindings(target: Target, r: DnsResult): Finding[] {
  const findings: Finding[] = []
  const base = { target: target.url }
  const evidence = dnsEvidence(r)
  const errs = [r.lookup.error, r.resolver.errorA, r.resolver.errorAaaa].filter((e): e is string => !!e && e !== 'ENODATA')
  if (r.lookup.error) {
    const timedOut = errs.some((e) => e === 'ETIMEOUT' || e === 'ETIMEDOUT') || (r.lookup.error === 'EAI_AGAIN' && !errs.includes('ENOTFOUND') && !errs.includes('ESERVFAIL'))
    const servfail = errs.includes('ESERVFAIL')
    if (timedOut) {
      findings.push({ ...base, id: 'dns.timeout', severity: 'critical', cause: 'dns_timeout', likelihood: 0.9, title: `The resolver did not answer for ${r.host} in time`, evidence, fix: fixes.dns(target, 'Check that the resolver in /etc/resolv.conf is reachable and answering.') })
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
        title: `getaddrinfo and DNS disagree about ${r.host}`,
        evidence: [...evidence, 'getaddrinfo reads /etc/hosts and nsswitch.conf first; a proxy resolving through DNS (nginx `resolver`) sees the DNS answer'],
        fix: 'Make /etc/hosts and DNS agree, or point the proxy at the address the application really listens on.',
      })
    }
  }
  findings.push({ ...base, id: 'dns.answers', severity: 'info', cause: null, likelihood: 0, title: `${r.host} resolves to ${r.addresses.map((a) => a.address).join(', ')}`, evidence, fix: '' })
  return findings
}

function dnsEvidence(r: DnsResult): string[] {
  const ms = (n: number) => `${n.toFixed(1)}ms`
  const lines = [r.lookup.error ? `getaddrinfo(${r.host}): ${r.lookup.error} after ${ms(r.lookup.ms)}` : `getaddrinfo(${r.host}): ${r.lookup.addresses.map((a) => a.address).join(', ')} in ${ms(r.lookup.ms)}`]
  if (r.resolver.skipped) lines.push(`DNS not asked: ${r.resolver.skipped}`)
  else {
    const fmt = (recs: DnsRecord[], err?: string) => (recs.length ? recs.map((x) => `${x.address} ttl=${x.ttl}s`).join(', ') : err ?? 'none')
    lines.push(`DNS A: ${fmt(r.resolver.a, r.resolver.errorA)}`, `DNS AAAA: ${fmt(r.resolver.aaaa, r.resolver.errorAaaa)}`)
  }
  return lines
}

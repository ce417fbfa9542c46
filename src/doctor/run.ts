/** `portico doctor` engine: gathers targets from a Portico config, an nginx config or URLs, runs every probe concurrently with bounded timeouts, reads logs and ranks findings. */
import { access } from 'node:fs/promises'
import { dirname } from 'node:path'
import { loadConfigFile } from '../config/load.ts'
import type { Config, UpstreamConfig } from '../config/schema.ts'
import { checkNginxConfig, readNginxConfig, type NginxModel } from './nginx/index.ts'
import { checkLogs, correlate, parseSince, readLog } from './logs/index.ts'
import { checkPorticoConfig } from './checks/portico-config.ts'
import { SEVERITY_ORDER, type Finding } from './finding.ts'
import { checkHost, readHost, type HostResult } from './host.ts'
import { probeBypass, type BypassResult } from './probes/bypass.ts'
import { probeDns, type DnsResult, type LookupFn, type ResolverLike } from './probes/dns.ts'
import { probeHttp, type HttpResult } from './probes/http.ts'
import { probeKeepalive, type KeepaliveResult } from './probes/keepalive.ts'
import { PORTICO_DEFAULTS, targetFromUrl, type ProxySettings, type System, type Target } from './probes/target.ts'
import { probeTcp, type TcpResult } from './probes/tcp.ts'
import { probeTls, type TlsResult } from './probes/tls.ts'

/** What to diagnose and how hard to try. At least one of config, nginx or upstream is needed. */
export interface DoctorInput {
  /** portico.yaml to diagnose (Portico keys in fixes). */
  config?: string
  /** nginx.conf to diagnose (nginx directives in fixes). */
  nginx?: string
  /** Bare endpoint URLs (`http://host:port[/path]`), judged against Portico's defaults. */
  upstream?: string[]
  /** The proxy's URL for the bypass comparison, e.g. `http://127.0.0.1:8080/health`. */
  via?: string
  /** Access or error logs to read (Portico JSON/text, nginx error.log/access.log). */
  log?: string[]
  /** The backend's own log, correlated with the proxy's failures. */
  backendLog?: string
  /** Only log entries after this (`10m`, `2h`, ISO 8601). */
  since?: string
  /** Bound for each single network wait (connect, DNS, header), ms. Default 3000. */
  timeoutMs?: number
  /** GET samples per endpoint for the latency distribution. Default 10 (1 to 100). */
  samples?: number
  /** How long the keep-alive probe waits for the backend to close an idle connection, ms. Default 6000. */
  keepaliveLimitMs?: number
  /** Progress lines while probes run. */
  onProgress?: (msg: string) => void
  /** Resolution used by the DNS probe; tests inject a loopback resolver so no query leaves the machine. */
  dns?: { lookup?: LookupFn; resolver?: ResolverLike }
  /** File systems to check for free space. Default `/` and the directories of the logs. */
  diskPaths?: string[]
}

/** Raw probe results of one target; a probe is absent when it did not run (e.g. no TCP, so no HTTP). */
export interface TargetProbes {
  target: Target
  dns?: DnsResult
  tcp?: TcpResult
  tls?: TlsResult
  http?: HttpResult
  keepalive?: KeepaliveResult
  bypass?: BypassResult
}

/** The outcome of a doctor run. */
export interface Report {
  system: System
  /** Ranked: most likely cause first, then by severity. */
  findings: Finding[]
  targets: Target[]
  probes: TargetProbes[]
  host?: HostResult
  /** Wall time of the run, ms. */
  durationMs: number
}

/** A usage problem (no target, bad URL, unreadable file): `portico doctor` exits 2. Test on `code`. */
export class DoctorUsageError extends Error {
  readonly code = 'PORTICO_DOCTOR_USAGE' as const
  constructor(message: string) {
    super(message)
    this.name = 'DoctorUsageError'
  }
}

/** Portico upstream settings as probe settings. */
export function porticoSettings(up: UpstreamConfig): ProxySettings {
  return {
    connectTimeoutMs: up.timeouts.connect,
    responseHeaderTimeoutMs: up.timeouts.response_header,
    bodyIdleTimeoutMs: up.timeouts.idle,
    keepaliveIdleTimeoutMs: up.keepalive.idle_timeout,
    maxResponseHeaderBytes: up.max_response_header_size,
  }
}

function porticoTargets(config: Config, file: string): Target[] {
  return Object.entries(config.upstreams).flatMap(([name, up]) =>
    up.endpoints.map((ep) => targetFromUrl(ep.url, 'portico', porticoSettings(up), { upstream: name, source: `${file} upstreams.${name}` })))
}

function nginxTargets(model: NginxModel): Target[] {
  const seen = new Set<string>()
  const out: Target[] = []
  for (const t of model.targets) {
    const proxy: ProxySettings = {
      connectTimeoutMs: t.timeouts.connectMs,
      responseHeaderTimeoutMs: t.timeouts.readMs,
      bodyIdleTimeoutMs: t.timeouts.readMs,
      keepaliveIdleTimeoutMs: t.keepalive?.timeoutMs ?? null,
      maxResponseHeaderBytes: t.settings.bufferSizeBytes,
    }
    const target = targetFromUrl(t.url, 'nginx', proxy, { ...(t.upstream ? { upstream: t.upstream } : {}), source: `${t.file}:${t.line} (${t.server} location ${t.location})` })
    const key = JSON.stringify([target.url, target.upstream, proxy])
    if (seen.has(key)) continue
    seen.add(key)
    out.push(target)
  }
  return out
}

/** Orders findings: likelihood (desc), then severity, then id; identical findings are dropped. */
export function rankFindings(findings: Finding[]): Finding[] {
  const seen = new Set<string>()
  return findings
    .filter((f) => {
      const k = `${f.id}\u0000${f.target ?? ''}\u0000${f.title}`
      if (seen.has(k)) return false
      seen.add(k)
      return true
    })
    .sort((a, b) => b.likelihood - a.likelihood || SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity] || a.id.localeCompare(b.id))
}

/** Runs the probes of one target in order (DNS → TCP → TLS/HTTP/keep-alive → bypass), each bounded. */
async function probeTarget(target: Target, input: DoctorInput, timeoutMs: number): Promise<{ probes: TargetProbes; findings: Finding[] }> {
  const progress = (msg: string) => input.onProgress?.(`${target.url}: ${msg}`)
  const probes: TargetProbes = { target }
  const findings: Finding[] = []
  progress('resolving')
  const dns = await probeDns(target, { timeoutMs, ...input.dns })
  probes.dns = dns.result
  findings.push(...dns.findings)
  if (dns.result.addresses.length === 0) return { probes, findings }
  progress('connecting')
  const tcp = await probeTcp(target, dns.result.addresses, Math.min(timeoutMs, Math.max(target.proxy.connectTimeoutMs, 1)))
  probes.tcp = tcp.result
  findings.push(...tcp.findings)
  const address = tcp.result.reachable?.address
  if (!address) return { probes, findings }
  progress('probing HTTP, TLS and keep-alive')
  const [tls, http, keepalive] = await Promise.all([
    target.scheme === 'https' ? probeTls(target, address, { timeoutMs }) : undefined,
    probeHttp(target, address, { timeoutMs, samples: input.samples }),
    probeKeepalive(target, address, { timeoutMs, limitMs: input.keepaliveLimitMs }),
  ])
  probes.http = http.result
  probes.keepalive = keepalive.result
  let tlsOut = tls
  const failed = http.result.failure?.outcome
  // A TLS port often just closes on a plain request: a ClientHello tells it apart from a crash.
  if (!tlsOut && failed && ['closed_before_header', 'reset_before_header', 'garbage', 'header_timeout'].includes(failed)) {
    tlsOut = await probeTls(target, address, { timeoutMs })
  }
  if (tlsOut) probes.tls = tlsOut.result
  const tlsExplains = tlsOut?.findings.some((f) => f.id === 'tls.on_http' || f.id === 'tls.plain_http_on_https')
  // When the scheme is wrong, the HTTP symptoms are consequences, not separate causes.
  findings.push(...(tlsOut?.findings ?? []), ...http.findings.filter((f) => !tlsExplains || f.severity === 'info'), ...keepalive.findings)
  if (input.via) {
    progress(`comparing with ${input.via}`)
    const bypass = await probeBypass(target, address, input.via, { timeoutMs })
    probes.bypass = bypass.result
    findings.push(...bypass.findings)
  }
  return { probes, findings }
}

async function readable(path: string, what: string): Promise<void> {
  try {
    await access(path)
  } catch {
    throw new DoctorUsageError(`cannot read ${what} "${path}"`)
  }
}

/**
 * Runs a full diagnosis. Probes of all targets run concurrently; every network wait is
 * bounded by `timeoutMs` (and by the proxy's own connect/first-byte timeouts when
 * shorter), so a run over unreachable endpoints finishes in about one timeout.
 *
 * @throws {DoctorUsageError} when no target is given, a URL is invalid, or a file cannot be read or parsed
 */
export async function runDoctor(input: DoctorInput): Promise<Report> {
  const t0 = performance.now()
  const timeoutMs = input.timeoutMs ?? 3000
  if (!input.config && !input.nginx && !input.upstream?.length) throw new DoctorUsageError('nothing to diagnose: give -c/--config FILE, --nginx FILE or --upstream URL')
  if (input.via) {
    try {
      const v = new URL(input.via)
      if (v.protocol !== 'http:' && v.protocol !== 'https:') throw new Error('scheme')
    } catch {
      throw new DoctorUsageError(`invalid --via "${input.via}": expected http://host:port[/path]`)
    }
  }
  for (const p of input.log ?? []) await readable(p, 'log')
  if (input.backendLog) await readable(input.backendLog, 'backend log')
  const system: System = input.nginx ? 'nginx' : input.config ? 'portico' : 'upstream'
  const targets: Target[] = []
  const staticFindings: Finding[] = []
  let model: NginxModel | undefined
  if (input.config) {
    await readable(input.config, 'config')
    let config: Config
    try {
      config = await loadConfigFile(input.config)
    } catch (e) {
      throw new DoctorUsageError((e as Error).message)
    }
    targets.push(...porticoTargets(config, input.config))
    staticFindings.push(...checkPorticoConfig(config, input.config))
  }
  if (input.nginx) {
    await readable(input.nginx, 'nginx config')
    try {
      model = await readNginxConfig(input.nginx)
    } catch (e) {
      throw new DoctorUsageError((e as Error).message)
    }
    targets.push(...nginxTargets(model))
  }
  for (const url of input.upstream ?? []) {
    try {
      targets.push(targetFromUrl(url, 'upstream', PORTICO_DEFAULTS))
    } catch (e) {
      throw new DoctorUsageError((e as Error).message)
    }
  }
  input.onProgress?.(`probing ${targets.length} endpoint${targets.length === 1 ? '' : 's'}`)
  const diskPaths = input.diskPaths ?? ['/', ...new Set((input.log ?? []).map((p) => dirname(p)))]
  const [results, host] = await Promise.all([
    Promise.all(targets.map((t) => probeTarget(t, input, timeoutMs))),
    readHost(diskPaths),
  ])
  const findings = [...staticFindings, ...results.flatMap((r) => r.findings), ...checkHost(host)]
  if (model) {
    const observed = results.flatMap((r) => [r.probes.http?.head, ...(r.probes.http?.samples ?? [])]).map((x) => x?.headerBytes ?? 0)
    const observedMaxHeaderBytes = observed.length ? Math.max(...observed) : 0
    findings.push(...checkNginxConfig(model, observedMaxHeaderBytes > 0 ? { observedMaxHeaderBytes } : {}))
  }
  if (input.log?.length) findings.push(...(await readLogs(input, system)))
  return { system, findings: rankFindings(findings), targets, probes: results.map((r) => r.probes), host, durationMs: performance.now() - t0 }
}

async function readLogs(input: DoctorInput, system: System): Promise<Finding[]> {
  input.onProgress?.('reading logs')
  let since: Date | undefined
  if (input.since) {
    try {
      since = parseSince(input.since)
    } catch (e) {
      throw new DoctorUsageError((e as Error).message)
    }
  }
  const out: Finding[] = []
  for (const path of input.log ?? []) {
    const summary = await readLog(path, since ? { since } : {})
    const correlation = input.backendLog ? await correlate(summary, input.backendLog) : undefined
    out.push(...checkLogs(summary, { system: system === 'nginx' ? 'nginx' : 'portico', ...(correlation ? { correlation } : {}) }))
  }
  return out
}

/** TCP probe: connects to every resolved address of an endpoint and names why a connect fails. */
import net from 'node:net'
import type { Finding } from '../finding.ts'
import type { LookupAddress } from './dns.ts'
import { connectOutcome } from './exchange.ts'
import { fixes, hostPort, type ProbeOutput, type Target } from './target.ts'

/** Outcome of one TCP connect. */
export interface TcpAttempt {
  address: string
  family: 4 | 6
  port: number
  outcome: 'ok' | 'refused' | 'timeout' | 'unreachable' | 'error'
  /** Connect latency (SYN to established), ms; for failures, the time until the failure. */
  ms: number
  error?: string
}

/** Raw results of the TCP probe for one endpoint. */
export interface TcpResult {
  attempts: TcpAttempt[]
  /** First address (in resolution order) that accepted, if any. */
  reachable?: LookupAddress
}

/**
 * Opens one TCP connection and closes it at once. Never throws.
 *
 * @param timeoutMs bound for the connect, ms
 */
export function connectOnce(address: string, family: 4 | 6, port: number, timeoutMs: number): Promise<TcpAttempt> {
  return new Promise((resolve) => {
    const t0 = performance.now()
    const socket = address.startsWith('unix:') ? net.connect({ path: address.slice(5) }) : net.connect({ host: address, port })
    const done = (outcome: TcpAttempt['outcome'], error?: string) => {
      clearTimeout(timer)
      socket.destroy()
      resolve({ address, family, port, outcome, ms: performance.now() - t0, ...(error ? { error } : {}) })
    }
    const timer = setTimeout(() => done('timeout', `no SYN-ACK within ${timeoutMs}ms`), timeoutMs)
    socket.once('connect', () => done('ok'))
    socket.once('error', (err: NodeJS.ErrnoException) => {
      const o = connectOutcome(err.code)
      done(o === 'refused' ? 'refused' : o === 'unreachable' ? 'unreachable' : o === 'connect_timeout' ? 'timeout' : 'error', err.code ?? err.message)
    })
  })
}

/**
 * Connects to each address (concurrently, each bounded by `timeoutMs`) and reports
 * latency or the failure. Findings: `tcp.refused` (connection_refused), `tcp.timeout`
 * (connection_timeout), `tcp.unreachable` (destination_ip_unroutable),
 * `tcp.localhost_v6_first` (localhost answers ::1 first but only 127.0.0.1 listens),
 * `tcp.ok` (info with the latency).
 */
export async function probeTcp(target: Target, addresses: LookupAddress[], timeoutMs: number): Promise<ProbeOutput<TcpResult>> {
  const attempts = await Promise.all(addresses.map((a) => connectOnce(a.address, a.family, target.port, timeoutMs)))
  const ok = attempts.find((a) => a.outcome === 'ok')
  const result: TcpResult = { attempts, ...(ok ? { reachable: { address: ok.address, family: ok.family } } : {}) }
  return { result, findings: tcpFindings(target, attempts, timeoutMs) }
}

function describe(a: TcpAttempt): string {
  const where = hostPort(a.address, a.port)
  if (a.outcome === 'ok') return `connect ${where}: ok in ${a.ms.toFixed(1)}ms`
  return `connect ${where}: ${a.outcome}${a.error ? ` (${a.error})` : ''} after ${a.ms.toFixed(1)}ms`
}

function tcpFindings(target: Target, attempts: TcpAttempt[], timeoutMs: number): Finding[] {
  if (attempts.length === 0) return []
  const evidence = attempts.map(describe)
  const base = { target: target.url, evidence }
  const first = attempts[0]
  const ok = attempts.filter((a) => a.outcome === 'ok')
  if (ok.length > 0) {
    if (first.outcome !== 'ok') {
      // Programs try the first address first: a dead ::1 costs every connect a failure or a fallback delay.
      return [{
        ...base, id: 'tcp.first_address_fails', severity: 'error', cause: first.outcome === 'timeout' ? 'connection_timeout' : 'connection_refused', likelihood: 0.7,
        title: `${target.host} resolves to ${first.address} first, but only ${ok.map((a) => a.address).join(', ')} accepts connections`,
        evidence: [...evidence, target.host === 'localhost' ? 'the backend listens on 127.0.0.1 only while localhost resolves to ::1 first' : 'clients that do not fall back to the next address fail'],
        fix: target.system === 'nginx'
          ? `Use \`${ok[0].address}\` instead of \`${target.host}\` in the \`server\`/\`proxy_pass\` address, or make the backend listen on ${first.address} too.`
          : `Use \`${target.scheme}://${hostPort(ok[0].address, target.port)}\` in \`upstreams.${target.upstream ?? '<name>'}.endpoints\`, or make the backend listen on ${first.address} too.`,
      }]
    }
    return [{ ...base, id: 'tcp.ok', severity: 'info', cause: null, likelihood: 0, title: `TCP connect to ${hostPort(first.address, target.port)} works (${first.ms.toFixed(1)}ms)`, fix: '' }]
  }
  if (attempts.some((a) => a.outcome === 'refused')) {
    return [{ ...base, id: 'tcp.refused', severity: 'critical', cause: 'connection_refused', likelihood: 0.95, title: `Nothing listens on ${hostPort(target.host, target.port)} (connection refused)`, fix: fixes.refused(target) }]
  }
  if (attempts.some((a) => a.outcome === 'unreachable')) {
    return [{ ...base, id: 'tcp.unreachable', severity: 'critical', cause: 'destination_ip_unroutable', likelihood: 0.9, title: `${hostPort(target.host, target.port)} is unreachable from this host`, fix: 'Check the routes (`ip route get <address>`) and firewall rules between this host and the upstream.' }]
  }
  if (attempts.some((a) => a.outcome === 'timeout')) {
    return [{
      ...base, id: 'tcp.timeout', severity: 'critical', cause: 'connection_timeout', likelihood: 0.9,
      title: `TCP connect to ${hostPort(target.host, target.port)} timed out after ${timeoutMs}ms`,
      evidence: [...evidence, 'no SYN-ACK: the listen backlog is full (the application accepts too slowly; `ss -lnt` on the backend shows Recv-Q at Send-Q), a firewall drops packets, or the host is down'],
      fix: fixes.connect(target, timeoutMs),
    }]
  }
  return [{ ...base, id: 'tcp.error', severity: 'error', cause: 'connection_refused', likelihood: 0.5, title: `TCP connect to ${hostPort(target.host, target.port)} failed`, fix: fixes.refused(target) }]
}

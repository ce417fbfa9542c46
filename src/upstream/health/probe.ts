/**
 * One health check probe of one endpoint: an HTTP GET on its own connection (no
 * keep-alive pooling) or a TCP connect, bounded by its own timer, with a failure named
 * by the classifier exactly as a request to that endpoint would have been.
 */
import { http } from '../../lib/node-http.ts'
import net from 'node:net'
import { nodeHttps, nodeTls } from '../../lib/lazy-builtins.ts'
import type { HealthCheckConfig } from '../../config/schema.ts'
import type { ConnectorOptions } from '../connector.ts'
import type { CauseType } from '../../failures/causes.ts'
import { classify, GatewayError, type FailureStage } from '../../failures/classify.ts'

/** Where a probe goes: the endpoint's address, nothing else. */
export interface ProbeTarget {
  protocol: 'http:' | 'https:'
  /** Host name or IP literal (IPv6 without brackets). */
  hostname: string
  /** The address to connect to when it was resolved from `hostname`; default `hostname`. */
  address?: string
  port: number
  /** `host:port` connected to, as the failure details name it. */
  label: string
  /** `hostname:port`, the default `Host` header; default `label`. */
  authority?: string
  /** Unix domain socket path of a `unix:/path` endpoint; null or absent for TCP. */
  socketPath?: string | null
  /** TLS settings of an https:// endpoint (the upstream's `tls`: CA, SNI name, client certificate, verification), so a probe trusts what requests trust. */
  tls?: ConnectorOptions['tls']
}

/** How one probe ended. `ms` is its duration in milliseconds. */
export type ProbeResult =
  | { ok: true; ms: number }
  | {
    ok: false
    ms: number
    /** The RFC 9209 type a request would have got, or null when the endpoint answered with a status outside `expected_status`. */
    type: CauseType | null
    /** In words, e.g. `connect ECONNREFUSED 127.0.0.1:3000` or `unexpected status 503`. */
    detail: string
  }

/** A probe under way. */
export interface RunningProbe {
  /** Settles when the probe is over and its socket closed; never rejects. */
  readonly result: Promise<ProbeResult>
  /** Ends the probe now (its result is then a failure that nobody should count). */
  cancel(): void
}

/** Whether `status` is in one of the inclusive `ranges`. */
export function statusExpected(status: number, ranges: HealthCheckConfig['expected_status']): boolean {
  return ranges.some((r) => status >= r.min && status <= r.max)
}

/**
 * Starts one probe of `target` as `cfg` says: `tcp` passes when the connect completes;
 * `http` sends `GET <path>` with `Host` (`cfg.host`, default `target.authority`) and
 * `Connection: close`, and passes when the status is in `expected_status`. The whole
 * probe is bounded by `cfg.timeout` ms: a connect still pending then is
 * `connection_timeout` (`dns_timeout` while resolving), a header still awaited is
 * `http_response_timeout`. Other errors go through the classifier (failures/classify.ts).
 */
export function startProbe(target: ProbeTarget, cfg: HealthCheckConfig): RunningProbe {
  const t0 = performance.now()
  let stage: FailureStage | 'dns' = 'connect'
  let outcome: ProbeResult | null = null
  let resolve!: (r: ProbeResult) => void
  const result = new Promise<ProbeResult>((r) => { resolve = r })
  const fail = (err: unknown): ProbeResult => {
    const c = classify(err, stage === 'dns' ? 'connect' : stage)
    return { ok: false, ms: performance.now() - t0, type: c.type, detail: c.detail }
  }

  let socket: net.Socket | null = null
  let req: http.ClientRequest | null = null
  const host = target.address ?? target.hostname
  const unix = target.socketPath ?? null
  const isIp = net.isIP(host) !== 0 || unix !== null
  if (!isIp) stage = 'dns'
  const watch = (s: net.Socket): void => {
    socket = s
    s.once('lookup', () => { stage = 'connect' })
    s.once((s as { encrypted?: boolean }).encrypted === true ? 'secureConnect' : 'connect', () => { stage = 'await_response_header' })
  }
  const settle = (): void => {
    clearTimeout(timer)
    resolve(outcome ?? fail(new GatewayError('connection_terminated', 'connection closed before a response')))
  }
  if (cfg.type === 'tcp') {
    const s = unix !== null ? net.connect({ path: unix }) : net.connect({ host, port: target.port })
    watch(s)
    s.once('connect', () => finish({ ok: true, ms: performance.now() - t0 }))
    s.once('error', (err) => finish(fail(err)))
    s.once('close', settle)
  } else {
    const client = target.protocol === 'https:' ? nodeHttps() : http
    const r = req = client.request({
      ...(unix !== null ? { socketPath: unix } : { host, port: target.port }),
      method: 'GET',
      path: cfg.path,
      // A one-off agent: the probe's connection is never pooled nor reused.
      agent: false,
      servername: target.tls?.servername ?? (target.protocol === 'https:' && !isIp ? host : undefined),
      rejectUnauthorized: target.tls?.rejectUnauthorized ?? true,
      ca: target.tls?.ca ? [...nodeTls().rootCertificates, ...(Array.isArray(target.tls.ca) ? target.tls.ca : [target.tls.ca])] : undefined,
      cert: target.tls?.cert,
      key: target.tls?.key,
      headers: { host: cfg.host ?? target.authority ?? target.label, 'user-agent': 'portico-health-check', connection: 'close' },
    })
    r.once('socket', watch)
    r.once('response', (res) => {
      res.resume()
      const status = res.statusCode ?? 0
      finish(statusExpected(status, cfg.expected_status)
        ? { ok: true, ms: performance.now() - t0 }
        : { ok: false, ms: performance.now() - t0, type: null, detail: `unexpected status ${status}` })
    })
    r.once('error', (err) => finish(fail(err)))
    // The result settles once the connection is really gone, so stop() leaves no socket.
    r.once('close', () => {
      const s = socket as net.Socket | null
      if (s !== null && !s.closed) s.once('close', settle)
      else settle()
    })
    r.end()
  }

  const timer = setTimeout(() => {
    const type = stage === 'dns' ? 'dns_timeout' : stage === 'connect' ? 'connection_timeout' : 'http_response_timeout'
    const what = stage === 'dns' ? `resolving ${host}` : stage === 'connect' ? `connecting to ${target.label}` : `waiting for the response header of ${target.label}`
    finish(fail(new GatewayError(type, `health check: ${what} took longer than ${cfg.timeout}ms`)))
  }, cfg.timeout)
  timer.unref()

  /** Keeps the first outcome and closes the connection; `result` settles on its close. */
  function finish(r: ProbeResult): void {
    if (outcome !== null) return
    outcome = r
    clearTimeout(timer)
    req?.destroy()
    ;(socket as net.Socket | null)?.destroy()
  }
  return {
    result,
    cancel: () => finish({ ok: false, ms: performance.now() - t0, type: 'proxy_internal_error', detail: 'health check cancelled' }),
  }
}

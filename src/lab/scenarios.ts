/**
 * The named lab scenarios behind `portico lab`: each starts one fault mode and names the
 * RFC 9209 error type a proxy in front of it should report.
 */
import type { CauseType } from '../failures/causes.ts'
import type { FaultMode, LabOptions } from './types.ts'

/** One scenario of `portico lab`. */
export interface Scenario {
  /** Name given on the command line. */
  name: string
  mode: FaultMode
  options?: LabOptions
  /** What the upstream does, in plain words. */
  description: string
  /** The RFC 9209 error type a proxy should report (src/failures/causes.ts); for timing faults, with timeouts shorter than the fault. */
  expect: CauseType
}

/** Every scenario, one per fault mode except 'ok', plus `tls-on-plain` (the 'tls' mode under its field name). */
export const SCENARIOS: readonly Scenario[] = Object.freeze([
  { name: 'refuse', mode: 'refuse', expect: 'connection_refused', description: 'nothing listens on the port: connects are refused (ECONNREFUSED)' },
  { name: 'connect-timeout', mode: 'connect-timeout', expect: 'connection_timeout', description: 'the accept queue is full: TCP connects never complete, like a firewall dropping SYNs' },
  { name: 'dns-invalid', mode: 'dns-invalid', expect: 'dns_error', description: 'the upstream host name is under .invalid and never resolves (NXDOMAIN)' },
  { name: 'hang', mode: 'hang', expect: 'http_response_timeout', description: 'accepts and reads the request, then never answers' },
  { name: 'reset-before-header', mode: 'reset-before-header', expect: 'connection_terminated', description: 'reads the request, then resets the connection (RST) before any response' },
  { name: 'close-before-header', mode: 'close-before-header', expect: 'connection_terminated', description: 'reads the request, then closes the connection (FIN) without a response' },
  { name: 'garbage', mode: 'garbage', expect: 'http_protocol_error', description: 'answers with an SSH banner instead of HTTP' },
  { name: 'tls', mode: 'tls', expect: 'http_protocol_error', description: 'an HTTPS server addressed as http://: plain HTTP gets a TLS alert back' },
  { name: 'tls-on-plain', mode: 'tls', expect: 'http_protocol_error', description: 'same as tls: a TLS port behind an http:// endpoint' },
  { name: 'plain-behind-https', mode: 'plain-behind-https', expect: 'tls_protocol_error', description: 'a plain HTTP server addressed as https:// (TLS "wrong version number")' },
  { name: 'big-header', mode: 'big-header', expect: 'http_response_header_section_size', description: 'answers 200 with a 64 KiB response header section' },
  { name: 'slow', mode: 'slow', expect: 'http_response_timeout', description: 'healthy but slow: response delay p50 50 ms, p99 400 ms (times out under a shorter response_header timeout)' },
  { name: 'slow-body', mode: 'slow-body', expect: 'connection_read_timeout', description: 'sends the header and a first chunk, then 1 KiB every 100 ms (times out under a shorter idle timeout)' },
  { name: 'reset-mid-body', mode: 'reset-mid-body', expect: 'http_response_incomplete', description: 'sends 200 with Content-Length 1 MiB, 64 KiB of body, then resets (RST)' },
  { name: 'idle-mid-body', mode: 'idle-mid-body', expect: 'connection_read_timeout', description: 'sends 200 with Content-Length 1 MiB, 64 KiB of body, then goes silent' },
  { name: 'keepalive-race', mode: 'keepalive-race', expect: 'connection_terminated', description: 'closes idle keep-alive connections after 200 ms without advertising Keep-Alive: timeout=' },
] satisfies Scenario[])

/** The scenario called `name`, or undefined. */
export function findScenario(name: string): Scenario | undefined {
  return SCENARIOS.find((s) => s.name === name)
}

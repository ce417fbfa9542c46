/** Static checks of a Portico config for `portico doctor`: endpoint schemes, timeouts and keep-alive settings that cause 502/504s. */
import { formatDuration } from '../../config/units.ts'
import type { Config } from '../../config/schema.ts'
import type { Finding } from '../finding.ts'

/** Node.js `server.keepAliveTimeout` default, ms: what most Node backends close idle connections after. */
const NODE_KEEPALIVE_TIMEOUT_MS = 5000

/**
 * Checks every upstream of a validated Portico config (durations in ms, sizes in bytes):
 * - `config.scheme_port`: https:// on port 80 or http:// on 443 (tls_protocol_error / http_protocol_error);
 * - `config.timeout_zero`: a zero timeout fails every request;
 * - `config.header_below_connect`: response_header shorter than connect;
 * - `config.keepalive_idle`: keepalive.idle_timeout at or above 5 s races Node's default keepAliveTimeout (connection_terminated);
 * - `config.idle_below_header`: timeouts.idle shorter than response_header;
 * - `config.header_size_small`: max_response_header_size below 4 KiB.
 * Fixes are Portico keys. Never throws.
 */
export function checkPorticoConfig(config: Config, file = 'portico.yaml'): Finding[] {
  const out: Finding[] = []
  for (const [name, up] of Object.entries(config.upstreams)) {
    const key = (k: string) => `upstreams.${name}.${k}`
    const target = `${file} upstreams.${name}`
    const add = (f: Omit<Finding, 'target'>) => out.push({ ...f, target })
    for (const ep of up.endpoints) {
      const u = new URL(ep.url)
      if (u.protocol === 'https:' && u.port === '80') {
        add({ id: 'config.scheme_port', severity: 'warning', cause: 'tls_protocol_error', likelihood: 0.5, title: `Endpoint ${ep.url} speaks https:// to port 80`, evidence: [`${key('endpoints')}: ${ep.url}`], fix: `Use \`http://${u.host}\` in \`${key('endpoints')}\` unless the backend really serves TLS on port 80.` })
      } else if (u.protocol === 'http:' && u.port === '443') {
        add({ id: 'config.scheme_port', severity: 'warning', cause: 'http_protocol_error', likelihood: 0.5, title: `Endpoint ${ep.url} speaks http:// to port 443`, evidence: [`${key('endpoints')}: ${ep.url}`], fix: `Use \`https://${u.hostname}:443\` in \`${key('endpoints')}\` unless the backend really serves plain HTTP on port 443.` })
      }
    }
    const t = up.timeouts
    for (const [k, v] of Object.entries({ connect: t.connect, response_header: t.response_header, idle: t.idle })) {
      if (v === 0) add({ id: 'config.timeout_zero', severity: 'error', cause: k === 'connect' ? 'connection_timeout' : 'http_response_timeout', likelihood: 0.7, title: `${key(`timeouts.${k}`)} is 0`, evidence: [`${key(`timeouts.${k}`)}: 0ms`], fix: `Set \`${key(`timeouts.${k}`)}\` to a real duration, e.g. \`${k === 'connect' ? '2s' : '30s'}\`.` })
    }
    if (t.response_header > 0 && t.response_header < t.connect) {
      add({ id: 'config.header_below_connect', severity: 'warning', cause: 'http_response_timeout', likelihood: 0.3, title: `The first-byte timeout (${formatDuration(t.response_header)}) is shorter than the connect timeout (${formatDuration(t.connect)})`, evidence: [`${key('timeouts.response_header')}: ${formatDuration(t.response_header)}`, `${key('timeouts.connect')}: ${formatDuration(t.connect)}`], fix: `Raise \`${key('timeouts.response_header')}\` above \`${key('timeouts.connect')}\`: the application needs more time to answer than the network needs to connect.` })
    }
    if (t.idle > 0 && t.idle < t.response_header) {
      add({ id: 'config.idle_below_header', severity: 'info', cause: null, likelihood: 0, title: `timeouts.idle (${formatDuration(t.idle)}) is shorter than timeouts.response_header (${formatDuration(t.response_header)})`, evidence: [`${key('timeouts.idle')}: ${formatDuration(t.idle)}`], fix: '' })
    }
    if (up.keepalive.idle_timeout >= NODE_KEEPALIVE_TIMEOUT_MS) {
      add({
        id: 'config.keepalive_idle', severity: 'warning', cause: 'connection_terminated', likelihood: 0.5,
        title: `${key('keepalive.idle_timeout')} (${formatDuration(up.keepalive.idle_timeout)}) is not below Node's default 5s keep-alive timeout`,
        evidence: [`${key('keepalive.idle_timeout')}: ${formatDuration(up.keepalive.idle_timeout)}`, 'Node.js servers close idle connections after 5s (server.keepAliveTimeout); many app servers use 5s or less'],
        fix: `Set \`${key('keepalive.idle_timeout')}: 4s\` (or below the backend's keep-alive timeout; run doctor against the endpoints to measure it).`,
      })
    }
    if (up.max_response_header_size < 4096) {
      add({ id: 'config.header_size_small', severity: 'warning', cause: 'http_response_header_section_size', likelihood: 0.3, title: `${key('max_response_header_size')} is only ${up.max_response_header_size} bytes`, evidence: [`${key('max_response_header_size')}: ${up.max_response_header_size}`], fix: `Set \`${key('max_response_header_size')}: 16KiB\`.` })
    }
  }
  return out
}

/**
 * Proxy-Status header values (RFC 9209) as Structured Field lists (RFC 8941).
 */
import type { CauseType } from './causes.ts'

/** Serialises a string as an RFC 8941 sf-string (quoted, with `\\` and `"` escaped, printable ASCII only). */
export function sfString(text: string): string {
  return `"${text.replace(/[^\x20-\x7e]/g, '?').replace(/[\\"]/g, (c) => `\\${c}`)}"`
}

/**
 * Proxy-Status member for an error Portico generated (RFC 9209 §2.1.1 `error`,
 * §2.1.5 `details`, §2.1.3 `next-hop`).
 *
 * @param proxy the proxy's name (a token), e.g. `portico`
 * @param type the RFC 9209 error type
 * @param details short free text; only included when the operator exposes details
 * @param nextHop `host:port` of the endpoint; only included when the operator exposes details
 */
export function proxyStatusError(proxy: string, type: CauseType, details?: string | null, nextHop?: string | null): string {
  let v = `${proxy}; error=${type}`
  if (nextHop) v += `; next-hop=${sfString(nextHop)}`
  if (details) v += `; details=${sfString(details)}`
  return v
}

/**
 * Proxy-Status for a response relayed from upstream (RFC 9209 §2.1.2 `received-status`).
 * An upstream's own Proxy-Status comes first: the list runs from the member closest to
 * the origin to the one closest to the client (RFC 9209 §2).
 *
 * @param proxy the proxy's name (a token)
 * @param status the status received from upstream
 * @param upstreamValue the Proxy-Status the upstream sent, if any
 */
export function proxyStatusReceived(proxy: string, status: number, upstreamValue?: string | string[]): string {
  const own = `${proxy}; received-status=${status}`
  if (!upstreamValue) return own
  const prior = Array.isArray(upstreamValue) ? upstreamValue.join(', ') : upstreamValue
  return prior ? `${prior}, ${own}` : own
}

/** One parsed Proxy-Status member: the proxy name and its parameters. */
export interface ProxyStatusMember {
  proxy: string
  params: Record<string, string | number | boolean>
}

/**
 * Parses a Proxy-Status header value (a subset of RFC 8941 lists sufficient for
 * Proxy-Status: tokens, strings, integers, booleans as parameters).
 *
 * @returns the members, closest to the origin first; malformed members are skipped
 */
export function parseProxyStatus(value: string): ProxyStatusMember[] {
  const members: ProxyStatusMember[] = []
  const re = /\s*([^;,\s"]+|"(?:[^"\\]|\\.)*")((?:\s*;\s*[a-z*][a-z0-9_.*-]*(?:=(?:"(?:[^"\\]|\\.)*"|[^;,\s]+))?)*)\s*(?:,|$)/gy
  let m: RegExpExecArray | null
  while (re.lastIndex < value.length && (m = re.exec(value)) !== null) {
    if (m[0] === '') break
    const params: Record<string, string | number | boolean> = {}
    for (const p of m[2].matchAll(/;\s*([a-z*][a-z0-9_.*-]*)(?:=("(?:[^"\\]|\\.)*"|[^;,\s]+))?/g)) {
      const raw = p[2]
      params[p[1]] = raw === undefined ? true
        : raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, '$1')
        : /^-?\d+$/.test(raw) ? Number(raw) : raw
    }
    members.push({ proxy: m[1].startsWith('"') ? m[1].slice(1, -1) : m[1], params })
  }
  return members
}

/** Address checks shared by the schema and the admin API (no zod here: the admin API loads this while serving). */
import net from 'node:net'

/** Whether `host:port` names a loopback host: 127.0.0.0/8, ::1 or `localhost`. */
export function isLoopbackAddress(hostPort: string): boolean {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):\d+$/.exec(hostPort)
  const host = (m?.[1] ?? m?.[2] ?? '').toLowerCase()
  if (host === 'localhost' || host === '::1') return true
  return net.isIPv4(host) && host.startsWith('127.')
}

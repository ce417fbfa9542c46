/** Unix socket probe: the path exists, is a socket, the proxy's user may open it, and something accepts on it. */
import { constants } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { Finding } from '../finding.ts'
import { connectOnce } from './tcp.ts'
import { fixes, type ProbeOutput, type Target } from './target.ts'

/** A user as /etc/passwd and /etc/group know it. */
export interface UserIds {
  name: string
  uid: number
  /** Primary and supplementary groups. */
  gids: number[]
  /** Name of the primary group, when known. */
  group: string | null
}

/** Raw results of the unix socket probe. */
export interface SocketResult {
  path: string
  /** `ok`, or why no connect was tried or what it got. */
  outcome: 'ok' | 'missing' | 'not_socket' | 'forbidden' | 'refused' | 'timeout' | 'error'
  /** Owner, group and mode (octal) of the socket file. */
  owner?: { uid: number; gid: number; mode: string }
  /** The user whose permissions were checked (nginx `user`), when one was. */
  user?: UserIds
  /** The first path element the user may not pass or open, when forbidden. */
  deniedAt?: string
  /** Connect time, or time to the failure, ms. */
  ms?: number
  error?: string
  /** `unix:/path` when something accepted a connection. */
  reachable?: string
}

/**
 * Looks a user up in /etc/passwd and /etc/group (no NSS: enough for the local users
 * nginx runs as, `www-data`, `nginx`, `nobody`).
 */
export async function lookupUser(name: string): Promise<UserIds | null> {
  const passwd = await readFile('/etc/passwd', 'utf8').catch(() => '')
  const row = passwd.split('\n').map((l) => l.split(':')).find((f) => f[0] === name || (/^\d+$/.test(name) && f[2] === name))
  if (!row || row.length < 4) return null
  const uid = Number(row[2])
  const gid = Number(row[3])
  const groups = (await readFile('/etc/group', 'utf8').catch(() => '')).split('\n').map((l) => l.split(':')).filter((f) => f.length >= 4)
  const gids = [gid, ...groups.filter((g) => g[3].split(',').includes(row[0])).map((g) => Number(g[2]))]
  return { name: row[0], uid, gids: [...new Set(gids)], group: groups.find((g) => Number(g[2]) === gid)?.[0] ?? null }
}

/** Whether `user` has `bit` (4 read, 2 write, 1 execute) on a file with this owner and mode; root has all. */
function allowed(user: UserIds, s: { uid: number; gid: number; mode: number }, bit: number): boolean {
  if (user.uid === 0) return true
  if (s.uid === user.uid) return ((s.mode >> 6) & bit) !== 0
  if (user.gids.includes(s.gid)) return ((s.mode >> 3) & bit) !== 0
  return (s.mode & bit) !== 0
}

/**
 * Probes a unix socket endpoint: the path must exist and be a socket; when `user` is
 * given (nginx's worker user), it needs search permission on every directory above
 * and write permission on the socket (connect(2) on a unix socket needs write); then
 * one connect, bounded by `timeoutMs`. Never throws.
 *
 * Findings: `unix.missing`, `unix.not_socket`, `unix.forbidden`, `unix.refused`
 * (connection_refused: nginx logs `(2: No such file or directory)`, `(13: Permission
 * denied)` or `(111: Connection refused)`), `unix.timeout` (connection_timeout),
 * `unix.ok` (info).
 */
export async function probeSocket(target: Target, opts: { timeoutMs: number; user?: string }): Promise<ProbeOutput<SocketResult>> {
  const path = target.socketPath ?? target.host
  const result: SocketResult = { path, outcome: 'ok' }
  try {
    const s = await stat(path)
    result.owner = { uid: s.uid, gid: s.gid, mode: (s.mode & 0o7777).toString(8).padStart(4, '0') }
    if (!s.isSocket()) result.outcome = 'not_socket'
    else if (opts.user) {
      const user = await lookupUser(opts.user)
      if (user) {
        result.user = user
        const dirs: string[] = []
        for (let d = dirname(path); ; d = dirname(d)) {
          dirs.unshift(d)
          if (d === dirname(d)) break
        }
        for (const d of dirs) {
          const ds = await stat(d).catch(() => null)
          if (ds && !allowed(user, { uid: ds.uid, gid: ds.gid, mode: ds.mode }, constants.S_IXOTH)) {
            result.outcome = 'forbidden'
            result.deniedAt = d
            break
          }
        }
        if (result.outcome === 'ok' && !allowed(user, { uid: s.uid, gid: s.gid, mode: s.mode }, constants.S_IWOTH)) {
          result.outcome = 'forbidden'
          result.deniedAt = path
        }
      }
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    result.outcome = code === 'ENOENT' || code === 'ENOTDIR' ? 'missing' : code === 'EACCES' ? 'forbidden' : 'error'
    result.error = code ?? (e as Error).message
  }
  if (result.outcome === 'ok' || result.outcome === 'forbidden') {
    const a = await connectOnce(`unix:${path}`, 4, 0, opts.timeoutMs)
    result.ms = a.ms
    if (a.outcome === 'ok') {
      if (result.outcome === 'ok') result.reachable = `unix:${path}`
    } else if (result.outcome === 'ok') {
      result.outcome = a.outcome === 'timeout' ? 'timeout' : a.error === 'ECONNREFUSED' ? 'refused' : a.error === 'EACCES' ? 'forbidden' : a.error === 'ENOENT' ? 'missing' : 'error'
      result.error = a.error
    }
  }
  return { result, findings: socketFindings(target, result, opts.timeoutMs) }
}

function socketFindings(t: Target, r: SocketResult, timeoutMs: number): Finding[] {
  const evidence: string[] = []
  if (r.owner) evidence.push(`${r.path}: owner uid ${r.owner.uid}, gid ${r.owner.gid}, mode ${r.owner.mode}`)
  else evidence.push(`${r.path}: ${r.error ?? 'not found'}`)
  if (r.user) evidence.push(`nginx workers run as ${r.user.name} (uid ${r.user.uid}, groups ${r.user.gids.join(',')})`)
  if (r.ms !== undefined) evidence.push(`connect unix:${r.path}: ${r.reachable ? 'ok' : r.error ?? r.outcome} after ${r.ms.toFixed(1)}ms`)
  const base = { target: t.url, evidence }
  const nginxSays = (text: string) => (t.system === 'nginx' ? ` (nginx logs "${text}")` : '')
  switch (r.outcome) {
    case 'ok':
      return [{ ...base, id: 'unix.ok', severity: 'info', cause: null, likelihood: 0, title: `unix:${r.path} accepts connections (${(r.ms ?? 0).toFixed(1)}ms)`, fix: '' }]
    case 'missing':
      return [{ ...base, id: 'unix.missing', severity: 'critical', cause: 'connection_refused', likelihood: 0.95, title: `The unix socket ${r.path} does not exist${nginxSays('connect() to unix:… failed (2: No such file or directory)')}`, fix: fixes.socketMissing(t, 'The application is not running or binds another path.') }]
    case 'not_socket':
      return [{ ...base, id: 'unix.not_socket', severity: 'critical', cause: 'connection_refused', likelihood: 0.95, title: `${r.path} exists but is not a socket`, fix: fixes.socketMissing(t, `${r.path} is a regular file or directory, perhaps left behind: remove it.`) }]
    case 'refused':
      return [{ ...base, id: 'unix.refused', severity: 'critical', cause: 'connection_refused', likelihood: 0.95, title: `Nothing accepts on the unix socket ${r.path} (a stale socket file)${nginxSays('(111: Connection refused)')}`, fix: fixes.socketMissing(t, 'The socket file is left from an application that is no longer running.') }]
    case 'forbidden': {
      const user = r.user?.name ?? 'the proxy user'
      const what = r.deniedAt && r.deniedAt !== r.path ? `cannot enter the directory ${r.deniedAt}` : `has no write permission on ${r.path} (mode ${r.owner?.mode ?? '?'})`
      return [{ ...base, id: 'unix.forbidden', severity: 'critical', cause: 'connection_refused', likelihood: 0.95, title: `nginx's worker user ${user} ${what}${nginxSays('connect() to unix:… failed (13: Permission denied)')}`, fix: fixes.socketForbidden(t, user, r.user?.group ?? null, `Connecting to a unix socket needs write permission on it and search permission on every directory above.`) }]
    }
    case 'timeout':
      return [{ ...base, id: 'unix.timeout', severity: 'critical', cause: 'connection_timeout', likelihood: 0.9, title: `Connecting to unix:${r.path} did not complete within ${timeoutMs}ms: its listen backlog is full`, fix: fixes.connect(t, timeoutMs) }]
    default:
      return [{ ...base, id: 'unix.error', severity: 'error', cause: 'connection_refused', likelihood: 0.6, title: `unix:${r.path} cannot be opened (${r.error ?? 'error'})`, fix: fixes.socketMissing(t, 'Check the path and the application.') }]
  }
}

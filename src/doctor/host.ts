/** Host resource checks of `portico doctor`: load, memory, disk, open files, ephemeral ports, TIME_WAIT and the listen backlog cap. */
import { readdir, readFile, statfs } from 'node:fs/promises'
import os from 'node:os'
import type { Finding } from './finding.ts'

/** Raw host numbers; a field is absent where the source (/proc) could not be read. */
export interface HostResult {
  /** 1-minute load average and CPU count. */
  load1: number
  cpus: number
  /** Free and total memory, bytes (os.freemem: MemAvailable on Linux). */
  freeMemBytes: number
  totalMemBytes: number
  /** Disk space per path, bytes available to unprivileged users. */
  disks: { path: string; availableBytes: number; totalBytes: number }[]
  /** Open file descriptors of this process vs its soft limit (/proc/self/limits). */
  openFiles?: { open: number; softLimit: number }
  /** System-wide allocated file handles vs fs.file-max (/proc/sys/fs/file-nr). */
  systemFiles?: { allocated: number; max: number }
  /** net.ipv4.ip_local_port_range. */
  ephemeralPorts?: { low: number; high: number }
  /** Sockets in TIME_WAIT (state 06 in /proc/net/tcp and tcp6). */
  timeWait?: number
  /** net.core.somaxconn. */
  somaxconn?: number
}

async function text(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8')
  } catch {
    return undefined
  }
}

async function countOpenFds(): Promise<number | undefined> {
  try {
    return (await readdir('/proc/self/fd')).length
  } catch {
    return undefined
  }
}

/** Counts TIME_WAIT (state 06) lines of /proc/net/tcp-format text. */
export function countTimeWait(procNetTcp: string): number {
  let n = 0
  for (const line of procNetTcp.split('\n').slice(1)) if (line.trim().split(/\s+/)[3] === '06') n++
  return n
}

/**
 * Reads the host's numbers. Never throws: anything unreadable (no /proc, not Linux) is left out.
 *
 * @param diskPaths paths whose file systems to check with fs.statfs (e.g. log and cache directories); default `['/']`
 */
export async function readHost(diskPaths: string[] = ['/']): Promise<HostResult> {
  const r: HostResult = { load1: os.loadavg()[0], cpus: os.availableParallelism(), freeMemBytes: os.freemem(), totalMemBytes: os.totalmem(), disks: [] }
  for (const path of diskPaths) {
    try {
      const s = await statfs(path)
      r.disks.push({ path, availableBytes: s.bavail * s.bsize, totalBytes: s.blocks * s.bsize })
    } catch { /* a missing path is not a host problem */ }
  }
  const limits = await text('/proc/self/limits')
  const open = await countOpenFds()
  const soft = limits ? /^Max open files\s+(\d+|unlimited)/m.exec(limits)?.[1] : undefined
  if (open !== undefined && soft !== undefined) r.openFiles = { open, softLimit: soft === 'unlimited' ? Infinity : Number(soft) }
  const fileNr = (await text('/proc/sys/fs/file-nr'))?.trim().split(/\s+/).map(Number)
  if (fileNr && fileNr.length === 3) r.systemFiles = { allocated: fileNr[0], max: fileNr[2] }
  const range = (await text('/proc/sys/net/ipv4/ip_local_port_range'))?.trim().split(/\s+/).map(Number)
  if (range && range.length === 2) r.ephemeralPorts = { low: range[0], high: range[1] }
  const tcp = [await text('/proc/net/tcp'), await text('/proc/net/tcp6')].filter((x): x is string => x !== undefined)
  if (tcp.length) r.timeWait = tcp.reduce((n, t) => n + countTimeWait(t), 0)
  const somaxconn = Number((await text('/proc/sys/net/core/somaxconn'))?.trim())
  if (Number.isFinite(somaxconn) && somaxconn > 0) r.somaxconn = somaxconn
  return r
}

const mib = (b: number) => `${(b / 1024 / 1024).toFixed(0)} MiB`

/**
 * Judges host numbers: a warning or error only where it is a risk for a proxy
 * (load above the core count, < 5% memory or disk free, > 80% of the file limit,
 * TIME_WAIT above half the ephemeral port range, somaxconn below 1024); info otherwise.
 */
export function checkHost(h: HostResult): Finding[] {
  const f: Finding[] = []
  const add = (id: string, risk: boolean, severity: 'warning' | 'error', title: string, evidence: string, fix: string) =>
    f.push({ id, severity: risk ? severity : 'info', cause: null, likelihood: risk ? 0.3 : 0, title, evidence: [evidence], fix: risk ? fix : '', target: 'host' })
  add('host.load', h.load1 > h.cpus, 'warning', `Load ${h.load1.toFixed(2)} on ${h.cpus} cores`, `1-minute load average ${h.load1.toFixed(2)}, ${h.cpus} CPUs`,
    'The host is CPU-saturated: slow answers become first-byte timeouts. Find the busy processes (`top`) or add capacity.')
  add('host.memory', h.freeMemBytes < 0.05 * h.totalMemBytes, 'error', `${mib(h.freeMemBytes)} of ${mib(h.totalMemBytes)} memory available`, `available ${mib(h.freeMemBytes)}, total ${mib(h.totalMemBytes)}`,
    'Memory is nearly exhausted: the OOM killer ends workers mid-request (connection_terminated). Check `dmesg` for OOM kills.')
  for (const d of h.disks) {
    add('host.disk', d.availableBytes < 0.05 * d.totalBytes, 'error', `${mib(d.availableBytes)} free on ${d.path}`, `${d.path}: ${mib(d.availableBytes)} available of ${mib(d.totalBytes)}`,
      `Free space on ${d.path}: a full disk stops logs and the proxy's temp files (nginx proxy_temp_path) and fails buffered responses.`)
  }
  if (h.openFiles) {
    const { open, softLimit } = h.openFiles
    add('host.open_files', open > 0.8 * softLimit, 'error', `${open} of ${softLimit} open files (soft limit)`, `/proc/self/fd: ${open}; Max open files soft limit ${softLimit}`,
      'Raise the open files limit (`ulimit -n`, systemd `LimitNOFILE=`, nginx `worker_rlimit_nofile`): accept() and connect() fail with EMFILE at the limit.')
  }
  if (h.systemFiles) {
    const { allocated, max } = h.systemFiles
    add('host.system_files', allocated > 0.8 * max, 'error', `${allocated} of ${max} system file handles`, `/proc/sys/fs/file-nr: ${allocated} allocated, max ${max}`, 'Raise fs.file-max or find the process leaking descriptors.')
  }
  if (h.ephemeralPorts && h.timeWait !== undefined) {
    const size = h.ephemeralPorts.high - h.ephemeralPorts.low + 1
    add('host.time_wait', h.timeWait > size / 2, 'warning', `${h.timeWait} sockets in TIME_WAIT, ephemeral range ${h.ephemeralPorts.low}-${h.ephemeralPorts.high} (${size} ports)`,
      `/proc/net/tcp{,6} state 06: ${h.timeWait}; ip_local_port_range ${h.ephemeralPorts.low} ${h.ephemeralPorts.high}`,
      'Reuse upstream connections (Portico keepalive; nginx `keepalive` in the upstream block with `proxy_http_version 1.1` and `proxy_set_header Connection ""`) or widen net.ipv4.ip_local_port_range: new connects fail with EADDRNOTAVAIL when ports run out.')
  }
  if (h.somaxconn !== undefined) {
    add('host.somaxconn', h.somaxconn < 1024, 'warning', `net.core.somaxconn is ${h.somaxconn}`, `/proc/sys/net/core/somaxconn: ${h.somaxconn}`,
      'Raise net.core.somaxconn (e.g. 4096): it caps every listen backlog, and a full backlog drops SYNs (connection_timeout) under bursts.')
  }
  return f
}

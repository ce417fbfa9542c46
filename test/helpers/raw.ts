/**
 * Raw-socket HTTP/1 client for tests where the exact bytes matter: writes the request as
 * given and parses what comes back (interim responses, the final head, a Content-Length or
 * chunked body, or a body up to the close) without any of node:http's own checks.
 */
import net from 'node:net'

/** One response head as received. */
export interface RawHead {
  status: number
  /** Lower-case names; repeated fields in order. */
  fields: Array<[string, string]>
}

/** What a raw exchange saw. */
export interface RawReply extends RawHead {
  /** 1xx responses before the final one. */
  interim: RawHead[]
  body: Buffer
  /** Every byte received. */
  bytes: Buffer
  /** Whether the server closed the connection (within the wait after the response). */
  closed: boolean
  /** The first value of a field, or undefined. */
  get(name: string): string | undefined
}

function parseHead(text: string): RawHead {
  const lines = text.split('\r\n')
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0])
  if (!m) throw new Error(`not a status line: ${JSON.stringify(lines[0])}`)
  const fields: Array<[string, string]> = []
  for (const line of lines.slice(1)) {
    const c = line.indexOf(':')
    if (c > 0) fields.push([line.slice(0, c).trim().toLowerCase(), line.slice(c + 1).trim()])
  }
  return { status: Number(m[1]), fields }
}

/** Parses a complete response out of `buf`, or returns null when more bytes are needed. */
function parseResponse(buf: Buffer, ended: boolean, headOnly: boolean): Omit<RawReply, 'bytes' | 'closed' | 'get'> | null {
  const interim: RawHead[] = []
  let at = 0
  for (;;) {
    const end = buf.indexOf('\r\n\r\n', at)
    if (end < 0) return null
    const head = parseHead(buf.subarray(at, end).toString('latin1'))
    at = end + 4
    if (head.status >= 100 && head.status < 200 && head.status !== 101) {
      interim.push(head)
      continue
    }
    const field = (n: string) => head.fields.find(([k]) => k === n)?.[1]
    const rest = buf.subarray(at)
    if (headOnly || head.status === 101 || head.status === 204 || head.status === 304) return { ...head, interim, body: Buffer.alloc(0) }
    const cl = field('content-length')
    if (cl !== undefined) {
      const n = Number(cl)
      return rest.length >= n ? { ...head, interim, body: rest.subarray(0, n) } : null
    }
    if (/chunked/i.test(field('transfer-encoding') ?? '')) {
      const chunks: Buffer[] = []
      let p = 0
      for (;;) {
        const eol = rest.indexOf('\r\n', p)
        if (eol < 0) return null
        const size = parseInt(rest.subarray(p, eol).toString('latin1'), 16)
        if (size === 0) return rest.indexOf('\r\n\r\n', eol) >= 0 || rest.length >= eol + 4 ? { ...head, interim, body: Buffer.concat(chunks) } : null
        if (rest.length < eol + 2 + size + 2) return null
        chunks.push(rest.subarray(eol + 2, eol + 2 + size))
        p = eol + 2 + size + 2
      }
    }
    return ended ? { ...head, interim, body: rest } : null
  }
}

/**
 * Connects to 127.0.0.1:`port`, writes `request` (bytes as given), and resolves with the
 * first complete final response, then waits up to `closeWaitMs` to see whether the server
 * closes the connection. Rejects when no complete response arrives within `waitMs`.
 *
 * @param headOnly the request is HEAD: the response has no body whatever its fields say
 */
export function rawRequest(port: number, request: string | Buffer, opts: { waitMs?: number; closeWaitMs?: number; headOnly?: boolean } = {}): Promise<RawReply> {
  const { waitMs = 5000, closeWaitMs = 300, headOnly = false } = opts
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    const chunks: Buffer[] = []
    let ended = false
    let parsed: ReturnType<typeof parseResponse> = null
    let closeTimer: NodeJS.Timeout | null = null
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`no complete response within ${waitMs}ms; got ${JSON.stringify(Buffer.concat(chunks).toString('latin1').slice(0, 400))}`))
    }, waitMs)
    const done = () => {
      clearTimeout(timer)
      if (closeTimer !== null) clearTimeout(closeTimer)
      socket.destroy()
      const p = parsed as NonNullable<typeof parsed>
      const bytes = Buffer.concat(chunks)
      resolve({ ...p, bytes, closed: ended, get: (name) => p.fields.find(([k]) => k === name)?.[1] })
    }
    const check = () => {
      if (parsed === null) parsed = parseResponse(Buffer.concat(chunks), ended, headOnly)
      if (parsed === null) {
        if (ended) {
          clearTimeout(timer)
          reject(new Error(`connection closed without a complete response: ${JSON.stringify(Buffer.concat(chunks).toString('latin1').slice(0, 400))}`))
        }
        return
      }
      if (ended) done()
      else if (closeTimer === null) closeTimer = setTimeout(done, closeWaitMs)
    }
    socket.on('data', (c: Buffer) => { chunks.push(c); check() })
    socket.on('end', () => { ended = true; check() })
    socket.on('close', () => { if (!ended) { ended = true; check() } })
    socket.on('error', () => {})
    socket.write(request)
  })
}

/**
 * What a TLS ClientHello says about the certificate a client can take (RFC 8446 §4.1.2,
 * RFC 5246 §7.4.1.2): read from the first bytes of a connection before the TLS server
 * takes it, so a listener can choose between an RSA and an ECDSA certificate of a name
 * chosen by SNI (Node's SNI path installs one certificate of a context; OpenSSL picks
 * among several only in the server's own context).
 */
import type { Socket } from 'node:net'

/** What the ClientHello offered, as far as certificate choice goes. */
export interface ClientHelloInfo {
  /** The server_name extension (RFC 6066 §3), lower-cased, or null. */
  servername: string | null
  /** Whether the client can verify an ECDSA certificate: an ECDSA signature algorithm is offered and, below TLS 1.3, an ECDHE-ECDSA cipher suite. */
  ecdsa: boolean
}

/** Largest ClientHello read before giving up (one TLS record holds at most 16 KiB). */
const MAX_HELLO_BYTES = 16 * 1024 + 5

/** ECDSA SignatureScheme code points (RFC 8446 §4.2.3): ecdsa_secp256r1_sha256, _secp384r1_sha384, _secp521r1_sha512, ecdsa_sha1. */
const ECDSA_SCHEMES = new Set([0x0403, 0x0503, 0x0603, 0x0203])

/** Whether a cipher suite is a TLS 1.3 one (authentication-agnostic) or an ECDHE-ECDSA one of TLS 1.2 and before (RFC 8422 §6, RFC 5289, RFC 7905). */
function ecdsaCapableSuite(s: number): boolean {
  if (s >= 0x1301 && s <= 0x1305) return true
  if ((s >= 0xc006 && s <= 0xc00a) || s === 0xc023 || s === 0xc024 || s === 0xc02b || s === 0xc02c || s === 0xcca9) return true
  return (s >= 0xc0ac && s <= 0xc0af) || s === 0xc072 || s === 0xc073 || s === 0xc086 || s === 0xc087
}

/**
 * Parses the ClientHello at the start of `buf` (the first TLS record of a connection).
 *
 * @returns the hello's facts; `'incomplete'` when more bytes are needed; null when the bytes
 *   are not a TLS ClientHello (the TLS server then deals with them as it would)
 */
export function parseClientHello(buf: Buffer): ClientHelloInfo | 'incomplete' | null {
  if (buf.length < 5) return buf.length > 0 && buf[0] !== 0x16 ? null : 'incomplete'
  if (buf[0] !== 0x16 || buf[1] !== 0x03) return null
  const recordLength = buf.readUInt16BE(3)
  if (buf.length < 5 + recordLength) return 'incomplete'
  const r = buf.subarray(5, 5 + recordLength)
  // Handshake header: type 1 (client_hello), 3-byte length. A hello split over records is
  // rare; what the first record holds is read.
  if (r.length < 4 || r[0] !== 0x01) return null
  let p = 4
  const need = (n: number) => p + n <= r.length
  if (!need(2 + 32)) return null
  p += 2 + 32 // legacy_version, random
  if (!need(1)) return null
  p += 1 + r[p] // legacy_session_id
  if (!need(2)) return null
  const suitesLength = r.readUInt16BE(p)
  p += 2
  if (!need(suitesLength)) return null
  let suiteOk = false
  for (let i = 0; i + 1 < suitesLength; i += 2) if (ecdsaCapableSuite(r.readUInt16BE(p + i))) suiteOk = true
  p += suitesLength
  if (!need(1)) return null
  p += 1 + r[p] // legacy_compression_methods
  let servername: string | null = null
  let schemeOk = false
  if (need(2)) {
    const end = Math.min(r.length, p + 2 + r.readUInt16BE(p))
    p += 2
    while (p + 4 <= end) {
      const type = r.readUInt16BE(p)
      const len = r.readUInt16BE(p + 2)
      const body = r.subarray(p + 4, Math.min(end, p + 4 + len))
      p += 4 + len
      if (type === 0x0000 && body.length >= 5 && body[2] === 0x00) {
        // server_name_list: one host_name entry (RFC 6066 §3).
        const nameLength = body.readUInt16BE(3)
        servername = body.subarray(5, 5 + nameLength).toString('latin1').toLowerCase()
      } else if (type === 0x000d && body.length >= 2) {
        // signature_algorithms (RFC 8446 §4.2.3).
        const listEnd = Math.min(body.length, 2 + body.readUInt16BE(0))
        for (let i = 2; i + 1 < listEnd; i += 2) if (ECDSA_SCHEMES.has(body.readUInt16BE(i))) schemeOk = true
      }
    }
  }
  return { servername, ecdsa: schemeOk && suiteOk }
}

/** Where {@link peekClientHello} leaves what it read on the connection. */
export const CLIENT_HELLO = Symbol('portico.clientHello')

/** A connection with its ClientHello read. */
export type HelloSocket = Socket & { [CLIENT_HELLO]?: ClientHelloInfo | null }

/**
 * Reads the ClientHello from `socket` without taking it: the bytes go back to the socket
 * (`unshift`), where the TLS server finds them as if unread. Gives up after `timeoutMs`,
 * on bytes that are not TLS, or past one record, and calls `done` in every case.
 *
 * @param done called once, with the facts (also kept under {@link CLIENT_HELLO}) or null
 */
export function peekClientHello(socket: HelloSocket, timeoutMs: number, done: (hello: ClientHelloInfo | null) => void): void {
  let buf: Buffer = Buffer.alloc(0)
  let finished = false
  const finish = (hello: ClientHelloInfo | null) => {
    if (finished) return
    finished = true
    clearTimeout(timer)
    socket.removeListener('readable', onReadable)
    socket.removeListener('close', onClose)
    socket[CLIENT_HELLO] = hello
    if (buf.length > 0) socket.unshift(buf)
    done(hello)
  }
  const onReadable = () => {
    let chunk: Buffer | null
    while ((chunk = socket.read() as Buffer | null) !== null) buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
    const hello = parseClientHello(buf)
    if (hello !== 'incomplete') finish(hello)
    else if (buf.length >= MAX_HELLO_BYTES) finish(null)
  }
  const onClose = () => finish(null)
  const timer = setTimeout(() => finish(null), timeoutMs)
  socket.on('readable', onReadable)
  socket.once('close', onClose)
}

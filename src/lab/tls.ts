/**
 * 'tls': an HTTPS upstream that a proxy mistakenly addresses as http://. TLS clients get
 * the healthy routes; plain-HTTP clients get a TLS alert record, which is not HTTP.
 */
import https from 'node:https'
import net from 'node:net'
import { makeCertificate, type KeyPair } from './certs.ts'
import type { LabContext } from './context.ts'
import type { Handler } from './ok.ts'

/** First byte of a TLS handshake record (ContentType handshake, RFC 8446 §5.1). */
const TLS_HANDSHAKE = 0x16

/**
 * A fatal `protocol_version` alert record (RFC 8446 §6): what TLS servers such as
 * OpenSSL 1.1 send to a client whose first bytes are not a ClientHello. Node's TLS
 * server closes such connections silently, which would look like a closed connection
 * instead of the protocol error a proxy meets in the field.
 */
export const TLS_ALERT = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46])

let labCertificate: KeyPair | undefined

/** The self-signed certificate of lab TLS servers (localhost, 127.0.0.1, ::1), made once per process. */
export function labKeyPair(): KeyPair {
  labCertificate ??= makeCertificate({ commonName: 'localhost', altNames: ['localhost', '127.0.0.1', '::1'] })
  return labCertificate
}

/**
 * A net.Server that looks at the first byte of each connection: a TLS handshake goes to
 * an HTTPS server running `inner`; anything else is answered with {@link TLS_ALERT} and closed.
 *
 * @throws {Error} when the certificate cannot be made (openssl missing)
 */
export function tlsServer(inner: Handler, context: LabContext): net.Server {
  const secure = https.createServer({ ...labKeyPair() }, inner)
  secure.on('request', () => context.requests++)
  return net.createServer({ pauseOnConnect: true }, (socket) => {
    socket.once('readable', () => {
      const first = socket.read() as Buffer | null
      if (first === null) return void socket.resume()
      if (first[0] === TLS_HANDSHAKE) {
        socket.unshift(first)
        secure.emit('connection', socket)
        return
      }
      context.requests++
      socket.end(TLS_ALERT)
    })
  })
}

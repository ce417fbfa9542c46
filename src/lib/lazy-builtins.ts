/**
 * `node:tls`, `node:https`, `node:http2` and `node:crypto`, loaded on first use rather than at start.
 *
 * Why: loading them initialises OpenSSL and compiles the modules, about 8 MB of RSS per
 * process for the TLS side and 5 MB for crypto (bench/memory.ts), which a proxy with
 * plain-HTTP listeners and upstreams and no admin token never needs. `require` is
 * synchronous, so a listener, a connection or a token check that does need them loads them
 * on the spot. Use the `import type` forms of these modules for types.
 */
import { createRequire } from 'node:module'
import type * as NodeTls from 'node:tls'
import type * as NodeHttps from 'node:https'
import type * as NodeHttp2 from 'node:http2'
import type * as NodeCrypto from 'node:crypto'

const require = createRequire(import.meta.url)
let tlsModule: typeof NodeTls | undefined
let httpsModule: typeof NodeHttps | undefined
let http2Module: typeof NodeHttp2 | undefined
let cryptoModule: typeof NodeCrypto | undefined

/** `node:tls`, loaded on the first call. */
export function nodeTls(): typeof NodeTls {
  return (tlsModule ??= require('node:tls') as typeof NodeTls)
}

/** `node:https`, loaded on the first call. */
export function nodeHttps(): typeof NodeHttps {
  return (httpsModule ??= require('node:https') as typeof NodeHttps)
}

/** `node:http2`, loaded on the first call. */
export function nodeHttp2(): typeof NodeHttp2 {
  return (http2Module ??= require('node:http2') as typeof NodeHttp2)
}

/** `node:crypto`, loaded on the first call. */
export function nodeCrypto(): typeof NodeCrypto {
  return (cryptoModule ??= require('node:crypto') as typeof NodeCrypto)
}

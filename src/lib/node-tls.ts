/**
 * `node:tls`, `node:https` and `node:http2`, loaded on first use rather than at start.
 *
 * Why: loading them initialises OpenSSL's TLS side and compiles the three modules, about
 * 8 MB of RSS per process (bench/memory.ts), which a proxy with plain-HTTP listeners and
 * upstreams never needs. `require` is synchronous, so a listener or a connection that does
 * need TLS loads them on the spot. Use the `import type` forms of these modules for types.
 */
import { createRequire } from 'node:module'
import type * as NodeTls from 'node:tls'
import type * as NodeHttps from 'node:https'
import type * as NodeHttp2 from 'node:http2'

const require = createRequire(import.meta.url)
let tlsModule: typeof NodeTls | undefined
let httpsModule: typeof NodeHttps | undefined
let http2Module: typeof NodeHttp2 | undefined

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

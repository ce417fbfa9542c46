/**
 * `node:http` loaded through `require`, not `import`.
 *
 * Why: an ESM import of a built-in reads every export to build its namespace, and
 * `http.WebSocket`, `http.CloseEvent` and `http.MessageEvent` are lazy getters that load
 * Node's bundled undici (fetch, WebSocket, web streams): about 17 MB of RSS per process
 * that the proxy never uses. `require` leaves the getters alone.
 */
import { createRequire } from 'node:module'
import type * as NodeHttp from 'node:http'

/** The `node:http` module (same object `import http from 'node:http'` gives). */
export const http: typeof NodeHttp = createRequire(import.meta.url)('node:http')

/** The `node:http` types used as `http.X`, so call sites read as with a plain import. */
export declare namespace http {
  type ClientRequest = NodeHttp.ClientRequest
  type IncomingMessage = NodeHttp.IncomingMessage
  type RequestListener<Req extends typeof NodeHttp.IncomingMessage = typeof NodeHttp.IncomingMessage, Res extends typeof NodeHttp.ServerResponse<InstanceType<Req>> = typeof NodeHttp.ServerResponse<InstanceType<Req>>> = NodeHttp.RequestListener<Req, Res>
  type Server<Req extends typeof NodeHttp.IncomingMessage = typeof NodeHttp.IncomingMessage, Res extends typeof NodeHttp.ServerResponse<InstanceType<Req>> = typeof NodeHttp.ServerResponse<InstanceType<Req>>> = NodeHttp.Server<Req, Res>
  type ServerOptions = NodeHttp.ServerOptions
  type ServerResponse<Req extends NodeHttp.IncomingMessage = NodeHttp.IncomingMessage> = NodeHttp.ServerResponse<Req>
}

/** Reason phrases by status code (`http.STATUS_CODES`). */
export const STATUS_CODES = http.STATUS_CODES

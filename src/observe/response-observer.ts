/**
 * What sees an upstream response besides the client: the cache's "store" phase today.
 * The exchange streams to it without knowing what it is.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'

/** An observer of one upstream response, told its start, each body chunk and its end. */
export interface ResponseObserver {
  /**
   * @param status the upstream status
   * @param headers the upstream header fields
   * @param out the downstream header fields; the observer may add some (`Cache-Status`)
   * @returns true to let the response go downstream, false when the observer answered the
   *   client itself (a stored response after a 304 or an error status): the exchange then
   *   writes nothing and discards the upstream body
   */
  start(status: number, headers: IncomingHttpHeaders, out: OutgoingHttpHeaders): boolean
  /** A body chunk, as it goes downstream. */
  data(chunk: Buffer): void
  /** The body ended whole. */
  end(): void
  /** The response failed or was abandoned; nothing of it may be kept. */
  error(): void
}

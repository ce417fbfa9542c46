/**
 * The request lifecycle as one ordered list of phases (DESIGN §1): the names every other
 * module uses for "where in the lifecycle are we". The cause table says in which phase
 * each cause arises; the classifier takes the phase an exchange failed in.
 */

/**
 * The phases of one request, in order:
 * - `accept`: a client connection is taken (listener, TLS);
 * - `parse`: the request head is read and the request context built;
 * - `validate_request`: the head is checked and the path normalised (src/protect/validate.ts);
 * - `route`: Host and path pick a route and its upstream;
 * - `cache_lookup`: a stored response may answer (routes that cache);
 * - `select_endpoint`: the load balancer picks an endpoint (waiting for DNS, limits);
 * - `connect`: TCP, then TLS, to the endpoint, or a pooled connection is reused;
 * - `send_request`: the request head and body go upstream;
 * - `await_response_header`: waiting for the upstream's response header (first byte);
 * - `cache_store`: the response is judged storable and teed to the cache;
 * - `stream_response`: the status went downstream and the body follows;
 * - `log`: the access log line is written, exactly once.
 *
 * A retry loops from a failed phase back to `select_endpoint`.
 */
export const LIFECYCLE_PHASES = [
  'accept',
  'parse',
  'validate_request',
  'route',
  'cache_lookup',
  'select_endpoint',
  'connect',
  'send_request',
  'await_response_header',
  'cache_store',
  'stream_response',
  'log',
] as const

/** One phase of the request lifecycle ({@link LIFECYCLE_PHASES}). */
export type LifecyclePhase = typeof LIFECYCLE_PHASES[number]

/**
 * The phases in which an exchange with an upstream can fail, as the classifier tells
 * them apart: the same errno means different causes before and after the response
 * header (an ECONNRESET while awaiting the header is `connection_terminated`, once the
 * response streams `http_response_incomplete`). `await_response_header` covers sending
 * the request too: a socket exists and no header has arrived.
 */
export const FAILURE_STAGES = ['connect', 'await_response_header', 'stream_response'] as const satisfies readonly LifecyclePhase[]

/** A phase in which an upstream exchange can fail ({@link FAILURE_STAGES}); a subset of {@link LifecyclePhase}. */
export type FailureStage = typeof FAILURE_STAGES[number]

const ORDER: Readonly<Record<LifecyclePhase, number>> = Object.freeze(
  Object.fromEntries(LIFECYCLE_PHASES.map((p, i) => [p, i])) as Record<LifecyclePhase, number>,
)

/** Position of a phase in the lifecycle, from 0 (`accept`). */
export function phaseIndex(phase: LifecyclePhase): number {
  return ORDER[phase]
}

/** Whether phase `a` comes before phase `b` in the lifecycle. */
export function isBefore(a: LifecyclePhase, b: LifecyclePhase): boolean {
  return ORDER[a] < ORDER[b]
}

/**
 * Refusals: requests Portico answers itself because they are malformed, ambiguous or
 * denied by the listener's rules. Each is a variant row of the cause table
 * (`http_request_error.<name>` or `http_request_denied.<name>`, src/failures/causes.ts),
 * which holds its status, title and hint; this module names them for the "validate
 * request" phase, the response (`Proxy-Status` `details`) and the access log (`details`
 * starting with the refusal's name).
 *
 * Adding a refusal means adding a variant row to the cause table and a `### <name>` entry
 * under its cause in docs/causes.md; test/failures/causes.test.ts and
 * test/protect/requests.test.ts keep them in step.
 */
import { CAUSE_IDS, CAUSES, type Cause, type CauseId, type RequestDeniedVariant, type RequestErrorVariant } from './causes.ts'

/** The name of a refusal, sent as `details` of `Proxy-Status` and first in the log's `details`. */
export type RefusalName = RequestErrorVariant | RequestDeniedVariant

/** One refusal: its row of the cause table, named. */
export interface Refusal extends Cause {
  readonly name: RefusalName
  /** Refusals are answered before any response started: always a status. */
  readonly status: number
}

const rows: Refusal[] = []
for (const id of CAUSE_IDS) {
  const c = CAUSES[id]
  const dot = id.indexOf('.')
  if (dot < 0 || c.status === null) continue
  rows.push(Object.freeze({ ...c, id: id as CauseId, status: c.status, name: id.slice(dot + 1) as RefusalName }))
}

/** The refusals, keyed by name: the variant rows of the cause table. Frozen. */
export const REFUSALS: Readonly<Record<RefusalName, Refusal>> = Object.freeze(
  Object.fromEntries(rows.map((r) => [r.name, r])) as Record<RefusalName, Refusal>,
)

/** Every refusal name, in table order. */
export const REFUSAL_NAMES: readonly RefusalName[] = Object.freeze(rows.map((r) => r.name))

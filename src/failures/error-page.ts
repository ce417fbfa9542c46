/**
 * The error page Portico answers with: small HTML or JSON (by `Accept`), with the request
 * ID, the cause in plain words and what to try. No stack traces; internal addresses and
 * raw error text only when the operator exposes details.
 */
import { CAUSES, type CauseId } from './causes.ts'

/** What an error page says: the row of the cause table gives its status, title and hint. */
export interface ErrorPageInput {
  cause: CauseId
  requestId: string
  /** Raw detail and endpoint, shown only when `expose` is true. */
  detail?: string | null
  endpoint?: string | null
  expose: boolean
}

/** A rendered error body with its content type. */
export interface ErrorPage {
  contentType: string
  body: string
}

/**
 * Whether the client prefers JSON: `Accept` names application/json (or a +json type)
 * before text/html. A missing Accept gets HTML, like nginx's error pages.
 */
export function prefersJson(accept: string | undefined): boolean {
  if (!accept) return false
  const json = accept.search(/application\/(?:[\w.+-]*\+)?json/i)
  if (json < 0) return false
  const html = accept.search(/text\/html/i)
  return html < 0 || json < html
}

/** Reason phrases of the statuses in the cause table (RFC 9110 §15, RFC 6585 §4–5). */
const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 408: 'Request Timeout',
  413: 'Content Too Large', 414: 'URI Too Long', 429: 'Too Many Requests', 431: 'Request Header Fields Too Large', 500: 'Internal Server Error',
  501: 'Not Implemented', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout', 505: 'HTTP Version Not Supported',
}

/**
 * The status of a cause's error page: the table's, or 502 for a mid-body cause (whose
 * response has normally started, so no page is sent).
 */
export function errorStatus(cause: CauseId): number {
  return CAUSES[cause].status ?? 502
}

/** The reason phrase of a status, as the error page shows it. */
export function statusText(status: number): string {
  return STATUS_TEXT[status] ?? 'Error'
}

/** Renders the error page for a proxy-generated error: status, title and hint from the cause table. */
export function renderErrorPage(input: ErrorPageInput, json: boolean): ErrorPage {
  const cause = CAUSES[input.cause]
  const status = errorStatus(input.cause)
  const text = statusText(status)
  if (json) {
    const body: Record<string, unknown> = {
      status,
      error: cause.type,
      title: cause.title,
      hint: cause.hint,
      request_id: input.requestId,
    }
    if (input.expose) {
      body.details = input.detail ?? null
      body.endpoint = input.endpoint ?? null
    }
    return { contentType: 'application/json', body: JSON.stringify(body) + '\n' }
  }
  const extra = input.expose
    ? `<p><b>Details:</b> ${escapeHtml(input.detail ?? '')}${input.endpoint ? ` (endpoint ${escapeHtml(input.endpoint)})` : ''}</p>\n`
    : ''
  const html = `<!doctype html>
<html><head><meta charset="utf-8"><title>${status} ${text}</title></head>
<body>
<h1>${status} ${text}</h1>
<p><b>${escapeHtml(cause.title)}</b> (<code>${cause.type}</code>)</p>
<p>${escapeHtml(cause.hint)}</p>
${extra}<p>Request ID: <code>${escapeHtml(input.requestId)}</code></p>
<hr><p>portico</p>
</body></html>
`
  return { contentType: 'text/html; charset=utf-8', body: html }
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

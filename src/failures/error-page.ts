/**
 * The error page Portico answers with: small HTML or JSON (by `Accept`), with the request
 * ID, the cause in plain words and what to try. No stack traces; internal addresses and
 * raw error text only when the operator exposes details.
 */
import { CAUSES, type CauseType } from './causes.ts'

/** What an error page says. */
export interface ErrorPageInput {
  type: CauseType
  status: number
  requestId: string
  /** Raw detail and endpoint, shown only when `expose` is true. */
  detail?: string | null
  endpoint?: string | null
  expose: boolean
  /** Words of a refusal variant (src/failures/refusals.ts), shown instead of the cause's title and hint. */
  title?: string
  hint?: string
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

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 413: 'Content Too Large', 429: 'Too Many Requests', 500: 'Internal Server Error',
  502: 'Bad Gateway', 503: 'Service Unavailable', 501: 'Not Implemented', 504: 'Gateway Timeout', 505: 'HTTP Version Not Supported',
}

/** Renders the error page for a proxy-generated error. */
export function renderErrorPage(input: ErrorPageInput, json: boolean): ErrorPage {
  const cause = input.title !== undefined ? { title: input.title, hint: input.hint ?? CAUSES[input.type].hint } : CAUSES[input.type]
  const statusText = STATUS_TEXT[input.status] ?? 'Error'
  if (json) {
    const body: Record<string, unknown> = {
      status: input.status,
      error: input.type,
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
<html><head><meta charset="utf-8"><title>${input.status} ${statusText}</title></head>
<body>
<h1>${input.status} ${statusText}</h1>
<p><b>${escapeHtml(cause.title)}</b> (<code>${input.type}</code>)</p>
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

/**
 * Checks the words of doctor's fixes: every Portico key path names a key of the config
 * schema, and every nginx statement (`name args;` in backticks) is a real directive,
 * allowed in the block the sentence puts it in.
 */
import { upstreamSchema } from '../../src/config/schema.ts'

type Ctx = 'main' | 'events' | 'http' | 'server' | 'location' | 'upstream'

const HSL: Ctx[] = ['http', 'server', 'location']
/** nginx directives doctor may name, with the contexts the nginx documentation allows. */
export const NGINX_DIRECTIVES: Record<string, Ctx[]> = {
  user: ['main'], worker_rlimit_nofile: ['main'], worker_connections: ['events'],
  proxy_pass: ['location'], fastcgi_pass: ['location'], uwsgi_pass: ['location'], scgi_pass: ['location'], grpc_pass: ['location'],
  set: ['server', 'location'], resolver: [...HSL, 'upstream'], resolver_timeout: HSL,
  keepalive: ['upstream'], keepalive_timeout: [...HSL, 'upstream'], keepalive_requests: [...HSL, 'upstream'], zone: ['upstream'], server: ['upstream'],
  proxy_http_version: HSL, proxy_set_header: HSL, proxy_buffering: HSL, proxy_ssl_server_name: HSL, proxy_ssl_name: HSL,
  proxy_ssl_verify: HSL, proxy_ssl_trusted_certificate: HSL, proxy_ssl_protocols: HSL,
  fastcgi_keep_conn: HSL, grpc_ssl_verify: HSL, grpc_ssl_trusted_certificate: HSL, grpc_ssl_name: HSL, grpc_ssl_server_name: HSL,
  uwsgi_ssl_verify: HSL, uwsgi_ssl_trusted_certificate: HSL, uwsgi_ssl_name: HSL, uwsgi_ssl_server_name: HSL,
  // Named by the fixes of the cause table's refusals and routing rows (ngx_http_core_module, _access_, _limit_req_, _limit_conn_, ngx_core_module).
  server_name: ['server'], error_log: ['main', 'http', 'server', 'location'],
  client_body_timeout: HSL, client_header_timeout: ['http', 'server'], client_max_body_size: HSL, large_client_header_buffers: ['http', 'server'],
  allow: HSL, deny: HSL, limit_except: ['location'], limit_req: HSL, limit_req_status: HSL, limit_req_zone: ['http'],
  limit_conn: HSL, limit_conn_status: HSL, limit_conn_zone: ['http'],
}
// The directives every pass module mirrors (ngx_http_{proxy,fastcgi,uwsgi,scgi,grpc}_module); grpc has no *_buffers.
for (const m of ['proxy', 'fastcgi', 'uwsgi', 'scgi', 'grpc']) {
  for (const d of ['read_timeout', 'connect_timeout', 'send_timeout', 'buffer_size', 'next_upstream', 'next_upstream_tries', 'next_upstream_timeout', ...(m === 'grpc' ? [] : ['buffers', 'busy_buffers_size'])]) {
    NGINX_DIRECTIVES[`${m}_${d}`] = HSL
  }
}

/** Whether `path` (`timeouts.idle`, `dns.resolvers`) is a key path of an upstream in the config schema. */
export function isUpstreamKey(path: string): boolean {
  let node: unknown = upstreamSchema
  for (const part of path.split('.')) {
    const shape = shapeOf(node)
    if (!shape || !(part in shape)) return false
    node = shape[part]
  }
  return true
}

function shapeOf(schema: unknown): Record<string, unknown> | null {
  let s = schema as { shape?: Record<string, unknown>; def?: { innerType?: unknown; in?: unknown; schema?: unknown; out?: unknown } } | undefined
  for (let i = 0; i < 10 && s; i++) {
    if (s.shape) return s.shape
    s = (s.def?.innerType ?? s.def?.in ?? s.def?.schema) as typeof s
  }
  return null
}

/** Problems with the words of one fix text, empty when every key and directive is real. */
export function vocabularyProblems(text: string): string[] {
  const problems: string[] = []
  for (const m of text.matchAll(/upstreams\.(?:<name>|[\w-]+)\.([a-z_]+(?:\.[a-z_]+)*)/g)) {
    if (!isUpstreamKey(m[1])) problems.push(`no Portico key upstreams.<name>.${m[1]}`)
  }
  for (const m of text.matchAll(/`([^`]+)`/g)) {
    const span = m[1]
    if (!span.trim().endsWith(';')) continue
    const after = text.slice((m.index ?? 0) + m[0].length, (m.index ?? 0) + m[0].length + 40)
    const block = /^ in (?:the )?`(\w+)/.exec(after)?.[1] ?? (/^ in (?:the )?(\w+) block/.exec(after)?.[1])
    for (const stmt of span.split(';').map((x) => x.trim()).filter(Boolean)) {
      const name = stmt.split(/\s+/)[0]
      const contexts = NGINX_DIRECTIVES[name]
      if (!contexts) { problems.push(`not an nginx directive doctor knows: ${name} (in \`${span}\`)`); continue }
      if (block && ['location', 'upstream', 'server', 'http', 'events'].includes(block) && !contexts.includes(block as Ctx)) problems.push(`${name} is not allowed in a ${block} block`)
    }
  }
  return problems
}

/**
 * Entry points of the nginx configuration reader for `portico doctor`.
 */
import { parseNginxConfig } from './parse.ts'
import { buildNginxModel } from './model.ts'
import type { NginxModel } from './model.ts'

export { parseNginxConfig, tokenize, NginxParseError } from './parse.ts'
export type { NginxConfigTree, NginxDirective } from './parse.ts'
export { buildNginxModel, splitHostPort, COMBINED_FORMAT, PROXY_DEFAULTS } from './model.ts'
export type {
  NginxModel, NginxUpstream, UpstreamServer, NginxServer, NginxLocation, ProxyPass, ProxySettings,
  ProxyTarget, LogFormatDef, ErrorLogRef, AccessLogRef, SourceRef, SettingName,
} from './model.ts'
export { parseNginxTime, parseNginxSize, formatNginxTime, formatNginxSize } from './units.ts'
export { checkNginxConfig } from '../checks/nginx-config.ts'
export type { NginxCheckOptions } from '../checks/nginx-config.ts'

/**
 * Reads an nginx configuration (includes expanded) and builds the doctor model: proxy
 * targets with effective timeouts (ms) and keep-alive, upstreams, servers, log files.
 *
 * @param path main configuration file, e.g. `/etc/nginx/nginx.conf`
 * @throws {NginxParseError} `file:line: message` when the configuration cannot be read or parsed
 */
export async function readNginxConfig(path: string): Promise<NginxModel> {
  return buildNginxModel(await parseNginxConfig(path))
}

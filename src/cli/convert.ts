/**
 * `portico convert --nginx FILE [-o portico.yaml]`: writes a Portico config that routes like
 * an nginx reverse-proxy configuration, and lists on standard error what it left out.
 */
import { writeFile } from 'node:fs/promises'
import { convertNginxFile, formatNote } from '../convert/nginx.ts'
import { ConfigError, formatProblems, parseConfig } from '../config/load.ts'
import { NginxParseError } from '../doctor/nginx/index.ts'

/** Options of `portico convert`. */
export interface ConvertOptions {
  /** nginx main configuration file. */
  nginx?: string
  /** Where to write portico.yaml; standard output when absent or `-`. */
  output?: string
}

/**
 * Converts, validates the result as `portico check` would, and writes it.
 *
 * @returns the exit code: 0 when every route was converted, 1 when something that changes
 *   routing or access was left out (the file is still written, with the omissions listed
 *   at its top), 2 when the nginx configuration cannot be read or no valid config results
 */
export async function convertCommand(opts: ConvertOptions, out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<number> {
  if (!opts.nginx) {
    err.write('portico convert: name the nginx configuration, e.g. portico convert --nginx /etc/nginx/nginx.conf -o portico.yaml\n')
    return 2
  }
  let result
  try {
    result = await convertNginxFile(opts.nginx)
  } catch (e) {
    if (!(e instanceof NginxParseError)) throw e
    err.write(`portico convert: ${e.message}\n`)
    return 2
  }
  const target = opts.output && opts.output !== '-' ? opts.output : null
  for (const n of result.notes) err.write(`${formatNote(n)}\n`)
  let summary: string
  try {
    const c = parseConfig(result.yaml, target ?? '<converted>')
    summary = `${c.listeners.length} listener(s), ${c.routes.length} route(s), ${Object.keys(c.upstreams).length} upstream(s)`
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e
    err.write(`portico convert: the converted config is not valid, nothing written:\n${formatProblems(e.problems)}\n`)
    return 2
  }
  if (target) await writeFile(target, result.yaml)
  else out.write(result.yaml)
  const routing = result.notes.filter((n) => n.routing).length
  err.write(`portico convert: ${summary} written to ${target ?? 'standard output'}; `
    + (result.notes.length === 0 ? 'everything converted.\n'
      : `${result.notes.length} directive(s) not converted as is${routing > 0 ? `, ${routing} of them change routing or access: review them before serving` : ', none changes routing'}.\n`))
  return result.complete ? 0 : 1
}

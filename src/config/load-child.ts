/**
 * The child process of ./isolated.ts: validates the config named by its one argument (a
 * JSON {@link ConfigSource}), writes a {@link ChildAnswer} as JSON to stdout and exits.
 * Exit 0 with `{ config }` or `{ problems }`; anything else (a bug) exits 1 with the stack on stderr.
 */
import type { ChildAnswer, ConfigSource } from './isolated.ts'
import { loadConfigFile } from './load.ts'
import { ConfigError } from './problems.ts'
import { quickConfig } from './quick.ts'

const source = JSON.parse(process.argv[2] ?? '{}') as ConfigSource
let answer: ChildAnswer
try {
  answer = { config: 'file' in source ? await loadConfigFile(source.file) : quickConfig(source.quick) }
} catch (err) {
  if (!(err instanceof ConfigError)) throw err
  answer = { problems: err.problems }
}
process.stdout.write(JSON.stringify(answer))

/**
 * Entry points of the log readers of `portico doctor`: Portico access logs, nginx
 * error.log and access.log, summaries, correlation with a backend log, and findings.
 */
export { readLog, LogSummarizer, findBursts, isFailure, minuteOf, MAX_FAILED_REQUESTS } from './summary.ts'
export type { LogSummary, CauseSummary, CauseKey, Burst, FailedRequest, SampleLine, ReadLogOptions } from './summary.ts'
export { correlate } from './correlate.ts'
export type { Correlation } from './correlate.ts'
export { detectFormat, lineReader } from './detect.ts'
export type { LogFormatName, LineReader } from './detect.ts'
export { parseSince } from './since.ts'
export { isGatewayStatus } from './event.ts'
export type { LogEvent, LogSource } from './event.ts'
export { parsePorticoJsonLine, parsePorticoTextLine } from './portico.ts'
export { parseNginxErrorLine, isNginxErrorLine, NGINX_ERROR_RULES } from './nginx-error.ts'
export type { NginxErrorRule } from './nginx-error.ts'
export { parseNginxAccessLine, compileLogFormat, parseCommonLayout, parseTimeLocal, lastOfList } from './nginx-access.ts'
export type { AccessFields, AccessLineParser } from './nginx-access.ts'
export { checkLogs } from '../checks/logs.ts'
export type { LogCheckOptions } from '../checks/logs.ts'

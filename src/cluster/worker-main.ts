/**
 * The program of a worker process, started by the primary (node:cluster). It loads the
 * request path only: no CLI, admin, doctor or lab code.
 */
import { runWorker } from './worker.ts'

await runWorker()

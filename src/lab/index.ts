/**
 * Fault-injecting lab upstreams: one loopback server per gateway failure cause, for tests,
 * demos, benchmarks and `portico doctor` drills.
 */
export type { FaultMode, LabOptions, LabServer } from './types.ts'
export { startLab, LAB_DEFAULTS } from './start.ts'
export { SCENARIOS, findScenario, type Scenario } from './scenarios.ts'
export { LabHostError, assertLoopback } from './context.ts'
export { makeCA, makeCertificate, type CertificateOptions, type KeyPair } from './certs.ts'
export { sampleLatency, type Latency } from './slow.ts'
export { GARBAGE } from './raw.ts'
export { TLS_ALERT } from './tls.ts'

/**
 * The data plane's public face: what the rest of podtap may use of it. A
 * session compiles, loads and attaches the programs for one capture
 * configuration (DataplaneConfig) on one node (NodeParams) and reads their
 * counters; the rest are the tools around it. Code outside src/datapath
 * imports this module only (test/unit/architecture.test.ts checks).
 */
export { ensureBpffs, PIN_ROOT, Session, STATE_DIR, type ApplyResult, type Attachment, type SessionOptions } from './session.ts';
export { compileDefines, PROTO_BITS, TCP_FLAG_BITS, type DataplaneConfig, type FilterProtocol, type FilterTcpFlag, type NodeParams } from './config.ts';
export { CompileError } from './compile.ts';
export { VerifierError } from './verifier.ts';
export { chooseVariant, KernelUnsupportedError, probeKernel, PROBES, reprobeKernel, type ProbeName } from './features.ts';
export { addCounters, emptyCounters, formatCounters, LOSS_REASONS, lost, REASONS, subCounters, type Count, type Counters, type Reason } from './counters.ts';
export { createRunner, type Runner } from './exec.ts';
export { ipv6Bytes } from './bpftool.ts';
export { getLink, listLinks, type Link, type Route } from './netdev.ts';
export type { Hook } from './tc.ts';
export { missingCapabilities, possibleCpus, requireCapabilities, requireRoot, requireTools } from './tools.ts';
export { MAX_RATE_PER_SECOND, NODE_BUDGET_PIN, readNodeBudget, type NodeBudget } from './node-budget.ts';
export { cleanupAll, leftovers, type CleanupReport } from './cleanup.ts';
export { inspectInterface, inspectNode, podVeths, type Finding, type Severity } from './doctor.ts';

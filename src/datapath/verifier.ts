/**
 * Turning a verifier rejection into an error a person can read: the decisive
 * lines (the rejection itself, the source line it points at, the instruction
 * count), with the full log saved to a file for the curious.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ExitCode, UserError } from '../util/errors.ts';

export interface VerifierSummary {
  program: string | undefined;
  reason: string;
  source: string | undefined;
  processed: string | undefined;
}

export function summarizeVerifierLog(log: string): VerifierSummary {
  const lines = log.split('\n').map((l) => l.trimEnd());
  const program = /prog '([^']+)': BPF program load failed/.exec(log)?.[1];
  const begin = lines.findIndex((l) => l.includes('-- BEGIN PROG LOAD LOG --'));
  const end = lines.findIndex((l, i) => i > begin && l.includes('-- END PROG LOAD LOG --'));
  const body = begin >= 0 ? lines.slice(begin + 1, end >= 0 ? end : undefined) : lines;
  const processedIdx = body.findIndex((l) => /^processed \d+ insns/.test(l));
  const tail = processedIdx >= 0 ? body.slice(0, processedIdx) : body;
  // The rejection: trailing lines after the last instruction/state dump line.
  const isInsn = (l: string) => /^\d+: \(/.test(l) || /^[;]/.test(l.trim()) || /^\s*$/.test(l) || /^from \d+ to \d+/.test(l) || /^\d+: R\d/.test(l);
  const reasonLines: string[] = [];
  for (let i = tail.length - 1; i >= 0; i--) {
    const l = tail[i] ?? '';
    if (isInsn(l)) {
      if (reasonLines.length) break;
      continue;
    }
    reasonLines.unshift(l.trim());
  }
  const source = [...tail].reverse().find((l) => /^; .* @ \S+:\d+/.test(l.trim()))?.trim().replace(/^; /, '');
  return {
    program,
    reason: reasonLines.join('; ') || 'rejected (see full log)',
    source,
    processed: processedIdx >= 0 ? body[processedIdx] : undefined,
  };
}

export class VerifierError extends UserError {
  readonly summary: VerifierSummary;
  readonly logPath: string | undefined;
  constructor(summary: VerifierSummary, logPath: string | undefined) {
    const where = summary.source ? `\n  at ${summary.source.replace(/^(.*) @ (\S+)$/, '$2: $1')}` : '';
    super(`the kernel's BPF verifier rejected ${summary.program ?? 'the program'}: ${summary.reason}${where}`, {
      exitCode: ExitCode.verifier,
      hint: `${summary.processed ?? ''}${logPath ? `${summary.processed ? '; ' : ''}full verifier log: ${logPath}` : ''}` || undefined,
    });
    this.name = 'VerifierError';
    this.summary = summary;
    this.logPath = logPath;
  }
}

export async function verifierError(log: string, dir: string, key: string): Promise<VerifierError> {
  let logPath: string | undefined = join(dir, `verifier-${key}.log`);
  try {
    await mkdir(dir, { recursive: true });
    await writeFile(logPath, log);
  } catch {
    logPath = undefined;
  }
  return new VerifierError(summarizeVerifierLog(log), logPath);
}

export function looksLikeVerifierRejection(log: string): boolean {
  return log.includes('BPF program load failed') && log.includes('-- BEGIN PROG LOAD LOG --');
}

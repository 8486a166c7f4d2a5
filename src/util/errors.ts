/**
 * Errors a user can act on. `exitCode` is what the CLI exits with; `hint` is
 * printed under the message. Wrap lower-level errors with `{ cause }`.
 */
export class UserError extends Error {
  readonly exitCode: number;
  readonly hint: string | undefined;
  constructor(message: string, opts: { exitCode?: number; hint?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'UserError';
    this.exitCode = opts.exitCode ?? 1;
    this.hint = opts.hint;
  }
}

/** Exit codes of the CLI, one per class of failure (documented in README). */
export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
  notRoot: 3,
  missingTool: 4,
  badInput: 5,
  verifier: 6,
  unreachable: 7,
  kernelUnsupported: 8,
} as const;

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

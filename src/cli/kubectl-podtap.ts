#!/usr/bin/env node
/**
 * kubectl-podtap: the kubectl plugin's executable (`kubectl podtap …` runs it
 * when it is on PATH). Ctrl-C (and SIGTERM) ask a capture to stop and clean
 * up — delete its SniffPolicy, unlabel the pod; a second Ctrl-C leaves at once.
 */
import { kubectlPodtap } from '../plugin/plugin.ts';
import { errorMessage, ExitCode, UserError } from '../util/errors.ts';

async function run(): Promise<number> {
  const stop = new AbortController();
  let asked = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    asked++;
    if (asked === 1) {
      process.stderr.write(`kubectl podtap: ${sig}: stopping (cleaning up; again to quit at once)\n`);
      stop.abort();
    } else {
      process.stderr.write('kubectl podtap: quitting without cleaning up: see kubectl podtap status\n');
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // a closed reader (| head, Wireshark gone) is an ending, not a crash
  process.stdout.on('error', () => undefined);
  try {
    return await kubectlPodtap(process.argv.slice(2), {
      stdout: process.stdout,
      stderr: process.stderr,
      signal: stop.signal,
      env: process.env,
      stdoutIsTTY: process.stdout.isTTY === true,
      stderrIsTTY: process.stderr.isTTY === true,
    });
  } catch (err) {
    if (err instanceof UserError) {
      process.stderr.write(`kubectl podtap: error: ${err.message}\n`);
      if (err.hint) process.stderr.write(`  ${err.hint}\n`);
      return err.exitCode;
    }
    process.stderr.write(`kubectl podtap: unexpected error: ${errorMessage(err)}\n`);
    if (process.env.PODTAP_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    return ExitCode.failure;
  }
}

// (no top-level await: the self-contained plugin is bundled as CommonJS)
void run().then((code) => {
  process.exitCode = code;
});

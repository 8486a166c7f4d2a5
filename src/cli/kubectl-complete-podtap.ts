#!/usr/bin/env node
/**
 * kubectl_complete-podtap: kubectl (1.26+) runs it to complete
 * `kubectl podtap …` (src/plugin/complete.ts).
 */
import { kubectlPodtap } from '../plugin/plugin.ts';

void kubectlPodtap(['__complete', ...process.argv.slice(2)], {
  stdout: process.stdout, stderr: process.stderr, signal: new AbortController().signal, env: process.env, stdoutIsTTY: false,
}).then(
  (code) => {
    process.exitCode = code;
  },
  () => {
    // completion never fails loudly: no candidates
    process.stdout.write(':4\n');
  },
);

#!/usr/bin/env node
/**
 * `podtap` as a clone of the repository runs it (scripts/podtap, scripts/demo.sh,
 * `npm run demo`): every command of the installed CLI plus the development
 * commands, whose code and dependencies are not part of the product:
 *   demo        the whole thing in network namespaces (tools/dev/demo.ts, the lab of test/lab)
 *   devcluster  the embedded Kubernetes API (packages/devcluster)
 */
import { commands, main, reportError, type Command } from '../../src/cli/main.ts';

export const devCommands: Record<string, Command> = {
  ...commands,
  devcluster: {
    summary: 'embedded Kubernetes API for development (a stand-in, not a cluster)',
    run: async (a) => (await import('@podtap/devcluster/cli')).devclusterCommand(a),
  },
  demo: {
    summary: 'the whole thing on this machine, in network namespaces (root)',
    run: async (a) => (await import('./demo.ts')).demoCommand(a),
  },
};

if (import.meta.main) {
  main(process.argv.slice(2), devCommands).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.exitCode = reportError(err);
    },
  );
}

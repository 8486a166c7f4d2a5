/**
 * `podtap collector` as its own process, for the SIGTERM test (the CLI
 * dispatcher src/cli/main.ts is not part of what this test checks).
 */
import { collectorCommand } from '../../../src/collector/cli.ts';
import { UserError } from '../../../src/util/errors.ts';

try {
  process.exitCode = await collectorCommand(process.argv.slice(2));
} catch (err) {
  if (!(err instanceof UserError)) throw err;
  process.stderr.write(`podtap collector: ${err.message}\n`);
  process.exitCode = err.exitCode;
}

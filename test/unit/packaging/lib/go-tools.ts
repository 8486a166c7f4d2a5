/**
 * Go tools the packaging tests run (promtool, krew), built from the Go module
 * proxy by scripts/tools/build.sh, once per pinned version. The suite builds
 * them before it enters its network namespace (scripts/test.sh): here they
 * are only looked up, and a missing one fails with the command that builds it.
 */
import { join } from 'node:path';
import { execa } from 'execa';
import { ROOT } from './render.ts';

export type GoTool = 'promtool' | 'krew';

export async function goTool(name: GoTool): Promise<string> {
  const r = await execa(join(ROOT, 'scripts/tools/build.sh'), [name, '--cached-only'], { reject: false, all: true });
  if (r.exitCode !== 0) throw new Error(`${name} is not built: run scripts/tools/build.sh ${name} (scripts/test.sh does)\n${r.all}`);
  return join(r.stdout.trim(), name);
}

/**
 * Benchmarks run inside a private network namespace, like the test suite: the
 * listeners they open (the embedded API, collectors) are invisible from the
 * machine's own interfaces, and their traffic cannot leave.
 */
import { execa } from 'execa';
import { NODE_BIN } from '../test/lab/netns.ts';

/** Re-run this script inside a fresh namespace unless already inside one; false = we are the parent (exit after). */
export async function enterPrivateNamespace(script: string): Promise<boolean> {
  if (process.env.PODTAP_BENCH_NS) return true;
  const ns = `podtap-bench-${process.pid}`;
  await execa('ip', ['netns', 'add', ns]);
  try {
    await execa('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    const r = await execa('nsenter', [`--net=/run/netns/${ns}`, NODE_BIN, script, ...process.argv.slice(2)], {
      stdio: 'inherit',
      reject: false,
      env: { ...process.env, PODTAP_BENCH_NS: ns },
    });
    process.exitCode = r.exitCode ?? 1;
  } finally {
    await execa('ip', ['netns', 'del', ns], { reject: false });
  }
  return false;
}

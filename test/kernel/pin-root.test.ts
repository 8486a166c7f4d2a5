/**
 * The agent's liveness follows its pin root. The chart mounts only the host's
 * /sys/fs/bpf/podtap into the agent; when that directory is removed on the
 * host, the container's mount keeps the removed directory, in which nothing
 * can be created (ENOENT) and which a restarted agent would not find.
 * /healthz must then fail, so that the kubelet restarts the container and
 * the runtime binds the directory again.
 */
import { mkdir, mkdtemp, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { watchPinRoot } from '../../src/agent/cli.ts';
import { silentLogger } from '../../src/util/log.ts';
import { NODE_BIN } from '../helpers/netns.ts';

const ROOT = new URL('../../', import.meta.url).pathname;

async function lostAfterFirstCheck(path: string): Promise<string | undefined> {
  const w = watchPinRoot(path, silentLogger, 60_000);
  await new Promise((r) => setTimeout(r, 100));
  w.stop();
  return w.lost();
}

describe("the agent's pin root watch (its liveness)", () => {
  const bpffsDir = `/sys/fs/bpf/podtap-pinroot-${process.pid}`;
  const cases: { description: string; input: () => Promise<string>; expected: 'alive' | 'lost' }[] = [
    { description: 'a directory of the BPF filesystem', input: async () => (await mkdir(bpffsDir, { recursive: true }), bpffsDir), expected: 'alive' },
    { description: 'a pin root not made yet (the first session makes it)', input: async () => join(tmpdir(), `podtap-none-${process.pid}`), expected: 'alive' },
    { description: 'a directory of another filesystem', input: async () => mkdtemp(join(tmpdir(), 'podtap-pinroot-')), expected: 'lost' },
  ];
  it.each(cases)('$description: $expected', async ({ input, expected }) => {
    const path = await input();
    try {
      const lost = await lostAfterFirstCheck(path);
      if (expected === 'alive') expect(lost).toBeUndefined();
      else expect(lost).toMatch(/is no longer on a BPF filesystem/);
    } finally {
      await rm(path, { recursive: true, force: true });
    }
  });

  it('is lost when the host removes the directory mounted as the pin root', async () => {
    const host = `/sys/fs/bpf/podtap-pinroot-bind-${process.pid}`;
    await mkdir(host);
    const target = await mkdtemp(join(tmpdir(), 'podtap-pinroot-target-'));
    // a "container": its own mount namespace, the host directory bound at the
    // pin root, the agent's watch polling it every 100 ms until it reports
    const script = [
      `const { watchPinRoot } = await import(${JSON.stringify(join(ROOT, 'src/agent/cli.ts'))});`,
      `const { silentLogger } = await import(${JSON.stringify(join(ROOT, 'src/util/log.ts'))});`,
      'const w = watchPinRoot(process.argv[1], silentLogger, 100);',
      "setTimeout(() => console.log('alive:', w.lost() ?? 'yes'), 500);",
      "const t = setInterval(() => { if (w.lost()) { console.log('lost:', w.lost()); process.exit(0); } }, 100);",
      'setTimeout(() => process.exit(1), 10_000);',
    ].join('\n');
    const container = execa('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', `mount --bind "$1" "$2" && exec "$3" --input-type=module -e "$4" "$2"`, 'sh', host, target, NODE_BIN, script], { reject: false, all: true });
    let out = '';
    container.all?.on('data', (d: Buffer) => (out += d.toString()));
    try {
      for (let i = 0; i < 100 && !out.includes('alive:'); i++) await new Promise((r) => setTimeout(r, 100));
      expect(out, 'bound: alive').toContain('alive: yes');
      await rmdir(host); // the host removes it, as `podtap cleanup` there does
      const done = await container;
      expect(done.all).toMatch(/lost: the pin root .* was removed/);
    } finally {
      container.kill('SIGKILL');
      await rmdir(host).catch(() => undefined);
      await rm(target, { recursive: true, force: true });
    }
  });
});

/**
 * `podtap devcluster` as a user runs it: banner, kubeconfig, kubectl, and a
 * clean stop on SIGTERM.
 */
import { describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';

// podtap of a clone of the repository, which has the development commands
const main = new URL('../../../tools/dev/main.ts', import.meta.url).pathname;

describe('podtap devcluster', () => {
  it('explains itself with --help', async () => {
    const r = await execa('npm', ['exec', '--', 'node', main, 'devcluster', '--help'], { reject: false });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('It is a stand-in, not a cluster');
    expect(r.stdout).toContain('--kubeconfig FILE');
  });

  it('refuses a bad port with the usage exit code', async () => {
    const r = await execa('npm', ['exec', '--', 'node', main, 'devcluster', '--port', 'eighty'], { reject: false });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('--port: "eighty" is not a port number');
  });

  it('serves kubectl with the kubeconfig it writes and stops cleanly on SIGTERM', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'podtap-devcluster-cli-'));
    const kubeconfig = join(dir, 'kubeconfig');
    // node directly (not through npm) so that SIGTERM reaches the server process.
    const nodeBin = new URL('../../../node_modules/.bin/node', import.meta.url).pathname;
    const proc = execa(nodeBin, [main, 'devcluster', '--port', '0', '--kubeconfig', kubeconfig], { reject: false, env: { PODTAP_LOG_LEVEL: 'warn' } });
    try {
      let out = '';
      proc.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
      });
      const deadline = Date.now() + 15_000;
      while (!out.includes('Stop with Ctrl-C') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(out).toContain('a development stand-in for a Kubernetes API server — NOT a cluster');
      const cfg = parse(await readFile(kubeconfig, 'utf8'));
      expect(cfg.clusters[0].cluster.server).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const ns = await execa('kubectl', ['get', 'namespaces', '-o', 'name'], { env: { KUBECONFIG: kubeconfig, KUBECACHEDIR: join(dir, 'cache') } });
      expect(ns.stdout.split('\n')).toEqual(['namespace/default', 'namespace/kube-node-lease', 'namespace/kube-public', 'namespace/kube-system']);
      proc.kill('SIGTERM');
      const done = await proc;
      expect(done.exitCode).toBe(0);
      expect(done.stdout).toContain('podtap devcluster: stopped');
    } finally {
      proc.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });
});

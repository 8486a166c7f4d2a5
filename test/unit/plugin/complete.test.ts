/**
 * kubectl podtap's shell completion, by kubectl's plugin protocol, against the
 * embedded Kubernetes API: subcommands, each subcommand's own options, pods
 * and workloads for capture, policies, namespaces; and through the real
 * kubectl (`kubectl __complete podtap …` runs kubectl_complete-podtap).
 * Also: an option of another subcommand is refused, naming who takes it.
 */
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiServer, writeKubeconfig, type ApiServer } from '@podtap/devcluster';
import { KubeClient, Resources, loadKubeConfig, type KubeObject } from '../../../src/k8s/index.ts';
import { kubectlPodtap } from '../../../src/plugin/plugin.ts';
import { UserError } from '../../../src/util/errors.ts';

let api: ApiServer;
let dir: string;
let kubeconfig: string;

beforeAll(async () => {
  api = await startApiServer({ port: 0 });
  dir = await mkdtemp(join(tmpdir(), 'podtap-complete-'));
  kubeconfig = join(dir, 'kubeconfig');
  await writeKubeconfig(kubeconfig, api.url);
  const client = new KubeClient(loadKubeConfig(kubeconfig));
  await client.create(Resources.namespaces, { metadata: { name: 'shop' } });
  for (const name of ['web-1', 'web-2']) {
    await client.create(Resources.pods, { metadata: { name, namespace: 'shop' }, spec: { containers: [{ name: 'c', image: 'registry.example/app:1' }] } } as KubeObject);
  }
  await client.create({ group: 'apps', version: 'v1', plural: 'deployments', kind: 'Deployment', namespaced: true }, {
    metadata: { name: 'web', namespace: 'shop' },
    spec: { selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'c', image: 'registry.example/app:1' }] } } },
  } as KubeObject);
});
afterAll(async () => {
  await api?.close();
  await rm(dir, { recursive: true, force: true });
});

async function complete(words: string[]): Promise<string[]> {
  let out = '';
  const stdout = new Writable({ write: (c: Buffer, _e, done) => ((out += c.toString()), done()) });
  await kubectlPodtap(['__complete', ...words], { stdout, stderr: stdout, signal: new AbortController().signal, env: {}, stdoutIsTTY: false });
  return out.trim().split('\n');
}

describe('completion', () => {
  const K = () => ['--kubeconfig', kubeconfig];
  it.each([
    { description: 'subcommands', input: () => [''], expected: ['capture', 'list', 'status', 'fetch', 'version', ':4'] },
    { description: 'a subcommand by its start', input: () => ['ca'], expected: ['capture', ':4'] },
    { description: 'capture: pods and workload kinds', input: () => ['capture', '-n', 'shop', ...K(), ''], expected: ['web-1', 'web-2', 'deploy/', 'sts/', 'ds/', 'rs/', ':4'] },
    { description: 'capture: deployments', input: () => ['capture', '-n', 'shop', ...K(), 'deploy/'], expected: ['deploy/web', ':4'] },
    { description: 'namespaces', input: () => ['capture', ...K(), '-n', 'sh'], expected: ['shop', ':4'] },
    { description: 'directions', input: () => ['capture', '--direction', ''], expected: ['in', 'out', 'both', ':4'] },
    { description: 'a file for -w', input: () => ['capture', '-w', ''], expected: [':0'] },
    { description: "list's options only", input: () => ['list', '--w'], expected: [':4'] },
    { description: "capture's options", input: () => ['capture', '--wi'], expected: ['--wireshark', ':4'] },
    { description: 'an unreachable cluster: nothing, no error', input: () => ['capture', '--kubeconfig', '/nonexistent', ''], expected: ['deploy/', 'sts/', 'ds/', 'rs/', ':4'] },
  ])('$description', async ({ input, expected }) => {
    expect(await complete(input())).toEqual(expected);
  });

  it('through the real kubectl, which runs kubectl_complete-podtap', async () => {
    const bin = join(dir, 'bin');
    await mkdir(bin, { recursive: true });
    for (const n of ['kubectl-podtap', 'kubectl_complete-podtap']) await symlink(join(process.cwd(), 'scripts', n), join(bin, n));
    const PATH = [bin, ...String(process.env.PATH).split(':').filter((d) => !d.includes('node_modules'))].join(':');
    const r = await execa('kubectl', ['__complete', 'podtap', 'capture', '-n', 'shop', ''], { env: { KUBECONFIG: kubeconfig, PATH, KUBECACHEDIR: join(dir, 'kube-cache') }, reject: false, all: true });
    expect(r.stdout.split('\n')).toEqual(expect.arrayContaining(['web-1', 'web-2', 'deploy/', ':4']));
  });
});

describe('options per subcommand', () => {
  it.each([
    { description: 'a capture option given to list', input: ['list', '--wireshark'], expected: /--wireshark is not an option of list \(capture takes it\)/ },
    { description: 'a list/fetch option given to capture', input: ['capture', 'web-1', '--policy', 'x'], expected: /--policy is not an option of capture \(list, fetch take it\)/ },
    { description: 'a selector given to status', input: ['status', '-l', 'app=web'], expected: /--selector is not an option of status \(capture takes it\)/ },
  ])('refuses $description', async ({ input, expected }) => {
    const sink = new Writable({ write: (_c, _e, done) => done() });
    const err = await kubectlPodtap(input, { stdout: sink, stderr: sink, signal: new AbortController().signal, env: {}, stdoutIsTTY: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(expected);
  });
});

/**
 * `kubectl podtap` against the project's embedded Kubernetes API (real REST,
 * the generated CRDs, and pods/portforward over WebSocket) and a real
 * collector: the collector "pod" has status.podIP 127.0.0.1, so the API
 * server's port-forward reaches the collector's HTTP port in this process.
 * Packets come from datagrams sent to the collector as an agent would send
 * them, announced under the policy the plugin created.
 */
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { execa } from 'execa';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiServer, writeKubeconfig, type ApiServer } from '@podtap/devcluster';
import { PodtapResources, type SniffPolicy } from '../../../src/api/index.ts';
import { startCollector, type Collector } from '../../../src/collector/collector.ts';
import { KubeClient, Resources, loadKubeConfig, type KubeObject, type ResourceRef } from '../../../src/k8s/index.ts';
import { kubectlPodtap, type PluginIO } from '../../../src/plugin/plugin.ts';
import { UserError } from '../../../src/util/errors.ts';
import { silentLogger } from '../../../src/util/log.ts';
import { readCapture } from '../collector/helpers.ts';
import { FrameSource, announcement, sendAll, until } from '../collector/running.ts';
import { createSocket, type Socket } from 'node:dgram';

const NS = 'shop';
const API_TOKEN = 'plugin-test-api-token';
const CRD_REF: ResourceRef = { group: 'apiextensions.k8s.io', version: 'v1', plural: 'customresourcedefinitions', kind: 'CustomResourceDefinition', namespaced: false };
const NODE = join(process.cwd(), 'node_modules/.bin/node');

let api: ApiServer;
let dir: string;
let kubeconfig: string;
let client: KubeClient;
let collector: Collector;
let udp: Socket;

async function createPod(namespace: string, name: string, labels: Record<string, string>, ip: string, ports: { name: string; containerPort: number }[] = []): Promise<void> {
  const created = await client.create<KubeObject>(Resources.pods, {
    metadata: { name, namespace, labels },
    spec: { containers: [{ name: 'c', image: 'registry.example/app:1', ports }] },
  } as KubeObject);
  await client.replaceStatus(Resources.pods, {
    ...created, status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], conditions: [{ type: 'Ready', status: 'True' }] },
  } as KubeObject);
}

beforeAll(async () => {
  api = await startApiServer({ port: 0 });
  dir = mkdtempSync(join(tmpdir(), 'podtap-plugin-'));
  kubeconfig = join(dir, 'kubeconfig');
  await writeKubeconfig(kubeconfig, api.url);
  client = new KubeClient(loadKubeConfig(kubeconfig));
  const crdDir = new URL('../../../charts/podtap/crds/', import.meta.url);
  for (const f of readdirSync(crdDir).filter((n) => n.endsWith('.yaml'))) await client.create(CRD_REF, parse(readFileSync(new URL(f, crdDir), 'utf8')) as KubeObject);
  await until(async () => Boolean(await client.list(PodtapResources.sniffPolicies).catch(() => undefined)), 'the CRDs to be served');
  for (const ns of [NS, 'podtap-system']) await client.create(Resources.namespaces, { metadata: { name: ns } });

  // the collector, as the chart runs it: a token file for its API
  await mkdir(join(dir, 'captures'));
  await writeFile(join(dir, 'api-token'), API_TOKEN);
  collector = await startCollector({
    logger: silentLogger, ingest: { host: '127.0.0.1', port: 0, workers: 1 }, store: { dir: join(dir, 'captures') },
    http: { host: '127.0.0.1', port: 0, tokenFile: join(dir, 'api-token') },
  });
  // its pod, Service and Secret in podtap-system
  await createPod('podtap-system', 'podtap-collector-0', { app: 'podtap-collector' }, '127.0.0.1', [{ name: 'http', containerPort: collector.http!.port }]);
  await client.create(Resources.services, {
    metadata: { name: 'podtap-collector', namespace: 'podtap-system' },
    spec: { selector: { app: 'podtap-collector' }, ports: [{ name: 'tunnel', port: 6081, protocol: 'UDP' }, { name: 'http', port: 8080, targetPort: 'http', protocol: 'TCP' }] },
  } as KubeObject);
  await client.create({ group: '', version: 'v1', plural: 'secrets', kind: 'Secret', namespaced: true }, {
    metadata: { name: 'podtap-collector-token', namespace: 'podtap-system' },
    data: { 'api-token': Buffer.from(API_TOKEN).toString('base64'), token: Buffer.from('agents').toString('base64') },
  } as KubeObject);
  await createPod(NS, 'web-1', { app: 'web' }, '198.18.10.2');
  await createPod(NS, 'web-2', { app: 'web' }, '198.18.11.2');
  udp = createSocket('udp4');
  await new Promise<void>((r) => udp.bind(0, '127.0.0.1', () => r()));
}, 60_000);

afterAll(async () => {
  udp?.close();
  await collector?.close();
  await api?.close();
  await rm(dir, { recursive: true, force: true });
});

function sink(): { stream: Writable; text: () => string } {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(c: Buffer, _e, done) {
      chunks.push(c);
      done();
    },
  });
  return { stream, text: () => Buffer.concat(chunks).toString() };
}

function io(over: Partial<PluginIO> = {}): PluginIO & { out: () => string; err: () => string; stop: () => void } {
  const o = sink();
  const e = sink();
  const ctl = new AbortController();
  return {
    stdout: o.stream, stderr: e.stream, signal: ctl.signal, env: {}, stdoutIsTTY: false,
    ...over, out: o.text, err: e.text, stop: () => ctl.abort(),
  };
}

const KC = (): string[] => ['--kubeconfig', kubeconfig];

async function policies(): Promise<SniffPolicy[]> {
  return (await client.list<SniffPolicy>(PodtapResources.sniffPolicies, { namespace: NS })).items;
}

async function pod(name: string): Promise<{ metadata: { labels?: Record<string, string> } }> {
  return (await client.get(Resources.pods, NS, name)) as unknown as { metadata: { labels?: Record<string, string> } };
}

/** What the data plane of the node would send for a policy: the announcement, then frames. */
async function traffic(policy: string, frames: number, pods: { ifindex: number; pod: string }[], src = new FrameSource()): Promise<void> {
  await sendAll(udp, collector.address.port, [announcement({ namespace: NS, name: policy }, pods.map((p) => ({ ...p, namespace: NS })))]);
  await until(() => collector.router.interfaces().some((i) => i.policy?.name === policy), 'the announcement');
  for (const p of pods) await sendAll(udp, collector.address.port, src.frames(frames, { ifindex: p.ifindex, cpu: p.ifindex }));
}

describe('kubectl podtap capture', () => {
  it('one pod over the port-forward: a policy selecting it exactly, its packets live into a file, everything removed on Ctrl-C', async () => {
    const file = join(dir, 'web-1.pcapng');
    const x = io();
    const run = kubectlPodtap(['capture', '-n', NS, 'web-1', '-w', file, ...KC()], x);
    const p = await until(async () => (await policies()).length === 1, 'the policy').then(async () => (await policies())[0]!);
    const name = p.metadata.name!;
    expect(name).toMatch(/^podtap-capture-[0-9a-f]{6}$/);
    // the pod is selected by name; the pods themselves are not touched
    expect(Object.keys((await pod('web-1')).metadata.labels ?? {})).toEqual(['app']);
    expect(p.metadata.labels).toMatchObject({ 'app.kubernetes.io/managed-by': 'kubectl-podtap' });
    expect(p.spec).toMatchObject({
      podSelector: {},
      podNames: ['web-1'],
      policyTypes: ['Ingress', 'Egress'],
      collector: { service: { name: 'podtap-collector', namespace: 'podtap-system' } },
      limits: { duration: '10m' },
    });
    // the node's agent sends what the policy matched (and another policy's packets, which must not show)
    await traffic(name, 5, [{ ifindex: 21, pod: 'web-1' }]);
    await traffic('someone-else', 3, [{ ifindex: 22, pod: 'web-2' }]);
    await until(() => collector.stats().livePackets >= 5, 'the packets to be streamed');
    await new Promise((r) => setTimeout(r, 300));
    x.stop(); // Ctrl-C
    expect(await run).toBe(0);
    expect(await policies()).toEqual([]);
    expect(x.err()).toMatch(new RegExp(`capturing ${NS}/web-1 with SniffPolicy ${NS}/${name} via port-forward to podtap-system/podtap-collector-0:\\d+ into ${file}`));
    expect(x.err()).toMatch(/interrupted: 5 packets, \d+ bytes/);
    expect(x.err()).toMatch(new RegExp(`deleted SniffPolicy ${NS}/${name}`));
    const packets = await readCapture(file);
    expect(packets.map((q) => q.ifName)).toEqual(Array(5).fill(`${NS}/web-1`));
  });

  it('a selector with filters to standard output, stopping itself after --for', async () => {
    const out = new PassThrough();
    const bytes: Buffer[] = [];
    out.on('data', (d: Buffer) => bytes.push(d));
    const x = io({ stdout: out });
    const run = kubectlPodtap(
      ['capture', '-n', NS, '-l', 'app=web,tier notin (db)', '--filter', 'proto=tcp,udp', '--filter', 'port=443,8000-8100', '--direction', 'in', '--snaplen', '128', '--for', '3s', '-o', '-', ...KC()],
      x,
    );
    await until(async () => (await policies()).length === 1, 'the policy');
    const p = (await policies())[0]!;
    expect(p.spec).toMatchObject({
      podSelector: { matchLabels: { app: 'web' }, matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['db'] }] },
      policyTypes: ['Ingress'],
      snapLength: 128,
      filter: { protocols: ['TCP', 'UDP'], ports: [{ port: 443 }, { port: 8000, endPort: 8100 }] },
    });
    await traffic(p.metadata.name!, 2, [{ ifindex: 31, pod: 'web-1' }, { ifindex: 32, pod: 'web-2' }]);
    expect(await run).toBe(0);
    expect(x.err()).toMatch(/time is up: \d+ packets/);
    expect(await policies()).toEqual([]);
    const file = join(dir, 'stdout.pcapng');
    await writeFile(file, Buffer.concat(bytes));
    expect(new Set((await readCapture(file)).map((q) => q.ifName))).toEqual(new Set([`${NS}/web-1`, `${NS}/web-2`]));
  });

  it('a workload (deploy/NAME) by its own selector, as kubectl names it', async () => {
    const selector = { matchLabels: { app: 'web' }, matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['db'] }] };
    await client.create({ group: 'apps', version: 'v1', plural: 'deployments', kind: 'Deployment', namespaced: true }, {
      metadata: { name: 'web', namespace: NS },
      spec: { selector, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'c', image: 'registry.example/app:1' }] } } },
    } as KubeObject);
    const out = new PassThrough();
    out.resume();
    // stderr a terminal: the status line is rewritten in place every second
    const x = io({ stdout: out, stderrIsTTY: true });
    const run = kubectlPodtap(['capture', '-n', NS, 'deployment.apps/web', '--for', '3s', '-o', '-', ...KC()], x);
    await until(async () => (await policies()).length === 1, 'the policy');
    const p = (await policies())[0]!;
    expect(p.spec.podSelector).toEqual(selector);
    expect(p.spec.podNames).toBeUndefined();
    await traffic(p.metadata.name!, 2, [{ ifindex: 51, pod: 'web-1' }]);
    expect(await run).toBe(0);
    expect(x.err()).toMatch(/capturing shop\/deployment\.apps\/web /);
    expect(x.err()).toMatch(/\r\x1b\[Kkubectl podtap: \d+ packets \(\d+\/s\), .*, lost (\d+|\?), stream dropped 0/);
    // the line is cleared before the last words
    expect(x.err()).toMatch(/\r\x1b\[Kkubectl podtap: deleted SniffPolicy/);
    expect(await policies()).toEqual([]);
  });

  it('--wireshark starts the viewer on a named pipe; closing it ends the capture', async () => {
    // a stand-in "wireshark": tshark reading the same -i pipe, quitting after 2 packets
    const bin = join(dir, 'fakebin');
    await mkdir(bin, { recursive: true });
    const got = join(dir, 'viewer.pcapng');
    await writeFile(join(bin, 'viewer'), `#!/bin/sh\n[ "$1" = "-k" ] || exit 9\nexec tshark -i "$3" -c 2 -w "${got}" -q 2>/dev/null\n`, { mode: 0o755 });
    const x = io({ env: { PODTAP_WIRESHARK: join(bin, 'viewer') } });
    const run = kubectlPodtap(['capture', '-n', NS, 'web-2', '--wireshark', ...KC()], x);
    await until(async () => (await policies()).length === 1, 'the policy');
    await traffic((await policies())[0]!.metadata.name!, 4, [{ ifindex: 41, pod: 'web-2' }]);
    expect(await run).toBe(0);
    expect(x.err()).toMatch(/viewer closed/);
    expect(await policies()).toEqual([]);
    expect((await readCapture(got)).length).toBe(2);
  });

  it('a stream the collector cuts short (it restarts) ends the capture with exit 7, keeping what came and removing the policy', async () => {
    // a collector of its own, reached straight (--collector-url), that this test stops
    await mkdir(join(dir, 'captures-cut'), { recursive: true });
    const cut = await startCollector({
      logger: silentLogger, ingest: { host: '127.0.0.1', port: 0, workers: 1 }, store: { dir: join(dir, 'captures-cut') },
      http: { host: '127.0.0.1', port: 0, tokenFile: join(dir, 'api-token') },
    });
    const file = join(dir, 'cut.pcapng');
    const x = io();
    const run = kubectlPodtap(['capture', '-n', NS, 'web-1', '-w', file, '--for', '2m', '--collector-url', `http://127.0.0.1:${cut.http!.port}`, '--token-file', join(dir, 'api-token'), ...KC()], x);
    try {
      await until(async () => (await policies()).length === 1, 'the policy');
      const name = (await policies())[0]!.metadata.name!;
      await sendAll(udp, cut.address.port, [announcement({ namespace: NS, name }, [{ ifindex: 61, pod: 'web-1', namespace: NS }])]);
      await until(() => cut.router.interfaces().some((i) => i.policy?.name === name), 'the announcement');
      await sendAll(udp, cut.address.port, new FrameSource().frames(3, { ifindex: 61, cpu: 0 }));
      await until(() => cut.stats().livePackets >= 3, 'the packets to be streamed');
    } finally {
      await cut.close();
    }
    expect(await run).toBe(7);
    expect(x.err()).toMatch(/the collector (ended the stream|connection broke): 3 packets/);
    expect(x.err()).toMatch(/stopped before it was asked to/);
    expect(await policies()).toEqual([]);
    expect((await readCapture(file)).length).toBe(3);
  });

  it.each([
    { description: 'no such pod', input: ['capture', '-n', NS, 'nope', '-w', '/dev/null'], expected: /reading pod shop\/nope: .*\(HTTP 404\)/ },
    { description: 'a pod and a selector', input: ['capture', '-n', NS, 'web-1', '-l', 'app=web', '-w', '/dev/null'], expected: /name one pod .*, or a label selector/ },
    { description: 'a kind capture does not take', input: ['capture', '-n', NS, 'svc/web', '-w', '/dev/null'], expected: /capture takes a pod or a deploy\/, sts\/, ds\/ or rs\/ NAME, not "svc"/ },
    { description: 'no such deployment', input: ['capture', '-n', NS, 'deploy/nope', '-w', '/dev/null'], expected: /reading Deployment shop\/nope: .*\(HTTP 404\)/ },
    { description: 'two outputs', input: ['capture', '-n', NS, 'web-1', '-w', '/dev/null', '-o', '-'], expected: /choose one of/ },
    { description: 'a bad filter', input: ['capture', '-n', NS, 'web-1', '--filter', 'proto=gre', '-w', '/dev/null'], expected: /unknown protocol "gre"/ },
    { description: 'a bad selector', input: ['capture', '-n', NS, '-l', 'app in (', '-w', '/dev/null'], expected: /unbalanced parentheses/ },
    { description: 'no collector there', input: ['capture', '-n', NS, 'web-1', '-w', '/dev/null', '--collector-namespace', 'elsewhere'], expected: /no collector Service elsewhere\/podtap-collector/ },
    { description: 'a wrong token', input: ['capture', '-n', NS, 'web-1', '-w', '/dev/null', '--token-file', '/dev/null'], expected: /did not accept a request without a token/ },
    { description: 'an unknown command', input: ['snoop'], expected: /unknown command "snoop"/ },
  ])('refuses $description, leaving nothing behind', async ({ input, expected }) => {
    const x = io();
    const err = await kubectlPodtap([...input, ...KC()], x).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(expected);
    expect(await policies()).toEqual([]);
    expect(Object.keys((await pod('web-1')).metadata.labels ?? {})).toEqual(['app']);
  });
});

describe('kubectl podtap list, fetch, status', () => {
  it('lists the stored captures per policy, and fetches one byte for byte (port-forward and --collector-url)', async () => {
    const x = io();
    expect(await kubectlPodtap(['list', '-n', NS, '-o', 'json', ...KC()], x)).toBe(0);
    const { items } = JSON.parse(x.out()) as { items: { path: string; policy: string; namespace: string }[] };
    expect(items.length).toBeGreaterThanOrEqual(3);
    expect(items.every((i) => i.namespace === NS)).toBe(true);
    const table = io();
    await kubectlPodtap(['list', '-n', NS, ...KC()], table);
    expect(table.out().split('\n')[0]).toMatch(/^NAMESPACE\s+POLICY\s+SIZE\s+STARTED\s+STATE\s+PATH$/);
    expect(table.out()).toContain(items[0]!.path);

    const one = items.find((i) => i.policy === 'someone-else')!;
    const target = join(dir, 'fetched.pcapng');
    expect(await kubectlPodtap(['fetch', one.path, '-w', target, ...KC()], io())).toBe(0);
    // (the open file is served up to its last whole block: compare with what tshark reads)
    expect((await readCapture(target)).length).toBe(3);
    const direct = join(dir, 'fetched-direct.pcapng');
    const y = io({ env: { PODTAP_COLLECTOR_TOKEN: API_TOKEN } });
    expect(await kubectlPodtap(['fetch', '--policy', 'someone-else', '-n', NS, '-w', direct, '--collector-url', `http://127.0.0.1:${collector.http!.port}`], y)).toBe(0);
    expect(await readFile(direct)).toEqual(await readFile(target));
  });

  it('status shows the policies, captures marked, and the collector’s counts', async () => {
    await client.create(PodtapResources.sniffPolicies, {
      apiVersion: 'podtap.io/v1alpha1', kind: 'SniffPolicy', metadata: { name: 'web-debug', namespace: NS }, spec: { collector: { address: '198.18.9.2' } },
    } as KubeObject);
    const x = io();
    expect(await kubectlPodtap(['status', '-n', NS, ...KC()], x)).toBe(0);
    expect(x.out()).toMatch(/^NAMESPACE\s+NAME\s+PHASE\s+NODES\s+PODS\s+PACKETS\s+BYTES\s+LOST\s+BY\s+AGE\n/);
    expect(x.out()).toMatch(/shop\s+web-debug\s+Pending\s+-\s+0\s+0\s+0 B\s+0\s+policy\s+\d+s/);
    expect(x.out()).toMatch(/collector: received \d+ datagrams, rebuilt \d+ packets, written \d+, lost 0, malformed 0, kernel dropped 0, write dropped 0; \d+ files/);
    await client.delete(PodtapResources.sniffPolicies, NS, 'web-debug');
  });

  // the agents' mirrored count is the policy's status (as the controller sums it); the
  // collector's rebuilt count is real: 4 frames sent through its socket for the policy
  it.each([
    { description: 'every mirrored packet rebuilt: ok', input: { name: 'tunnel-ok', mirrored: 4 }, expected: /^tunnel: ok — the agents mirrored 4 packets, the collector rebuilt 4$/m },
    {
      description: 'fewer rebuilt than mirrored: losing, how many',
      input: { name: 'tunnel-losing', mirrored: 7 },
      expected: /^tunnel: LOSING — the agents mirrored 7 packets, the collector rebuilt 4: 3 left the nodes and never arrived whole/m,
    },
  ])('status NAME compares mirrored with rebuilt end to end: $description', async ({ input, expected }) => {
    await client.create(PodtapResources.sniffPolicies, {
      apiVersion: 'podtap.io/v1alpha1', kind: 'SniffPolicy', metadata: { name: input.name, namespace: NS },
      spec: { collector: { service: { name: 'podtap-collector', namespace: 'podtap-system' } } },
    } as KubeObject);
    await client.patchStatus(PodtapResources.sniffPolicies, NS, input.name, { status: { packets: input.mirrored, startTime: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z') } });
    await traffic(input.name, 4, [{ ifindex: 41 + input.mirrored, pod: 'web-1' }]);
    await until(async () => {
      const s = (await (await fetch(`http://127.0.0.1:${collector.http!.port}/api/v1/status`, { headers: { Authorization: `Bearer ${API_TOKEN}` } })).json()) as { policies: { name: string; packets: number }[] };
      return s.policies.find((p) => p.name === input.name)?.packets === 4;
    }, 'the collector to rebuild the 4 packets');
    const x = io();
    expect(await kubectlPodtap(['status', '-n', NS, input.name, ...KC()], x)).toBe(0);
    expect(x.out()).toMatch(expected);
    await client.delete(PodtapResources.sniffPolicies, NS, input.name);
  });
});

describe('the kubectl-podtap executable under the real kubectl', () => {
  it('kubectl finds the plugin; Ctrl-C (SIGINT) cleans up a capture', async () => {
    const bin = join(dir, 'pluginbin');
    await mkdir(bin, { recursive: true });
    // installed as the README says: a link to the repository's wrapper, which
    // brings its own Node 24 — the PATH has only the system's (older) node
    await symlink(join(process.cwd(), 'scripts/kubectl-podtap'), join(bin, 'kubectl-podtap'));
    const PATH = [bin, ...String(process.env.PATH).split(':').filter((d) => !d.includes('node_modules'))].join(':');
    const env = { KUBECONFIG: kubeconfig, PATH, KUBECACHEDIR: join(dir, 'kube-cache') };
    const help = await execa('kubectl', ['podtap', '--help'], { env, reject: false });
    expect(help.exitCode).toBe(0);
    expect(help.stdout).toContain('kubectl podtap capture');
    const file = join(dir, 'kubectl.pcapng');
    const proc = execa('kubectl', ['podtap', 'capture', '-n', NS, 'web-1', '-w', file], { env, reject: false });
    await until(async () => (await policies()).length === 1, 'the policy', 20_000);
    await traffic((await policies())[0]!.metadata.name!, 3, [{ ifindex: 51, pod: 'web-1' }]);
    await until(async () => (await readCapture(file).catch(() => [])).length === 3, 'the packets in the file');
    proc.kill('SIGINT');
    const r = await proc;
    expect({ code: r.exitCode, stderr: String(r.stderr) }).toMatchObject({ code: 0 });
    expect(String(r.stderr)).toMatch(/deleted SniffPolicy shop\/podtap-capture-/);
    expect(await policies()).toEqual([]);
    expect(Object.keys((await pod('web-1')).metadata.labels ?? {})).toEqual(['app']);
  });

  it('exit codes: usage 2', async () => {
    const r = await execa(NODE, ['src/cli/kubectl-podtap.ts', 'capture', '--direction', 'sideways', 'x'], { reject: false, env: { KUBECONFIG: kubeconfig } });
    expect(r.exitCode).toBe(2);
    expect(String(r.stderr)).toMatch(/--direction: in, out, both \(from the pod's side\), not "sideways"/);
  });
});

/**
 * Captures are read per namespace (issue 9 part 4), against the real
 * kube-apiserver: the collector authenticates each request's bearer token
 * with a TokenReview and authorizes each read with a SubjectAccessReview
 * (src/collector/access.ts), as the account the chart gives it (the chart's
 * own RBAC, rendered and applied here); tenants hold only namespace-level
 * rights through the built-in edit/view roles, into which the chart's roles
 * are aggregated by the real controller-manager's aggregation controller.
 *
 * Each defence is asked here through the HTTP API and through the real
 * kubectl running the plugin (`kubectl podtap …`, the user's kubeconfig):
 * without the TokenReview every token would pass or none; without the
 * SubjectAccessReview alice would read team-b; without per-file owners the
 * download would leak; without the stream's re-check a revoked role would
 * keep streaming.
 */
import { createSocket, type Socket } from 'node:dgram';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CAPTURE_ACCESS, kubeReviewer } from '../../src/collector/access.ts';
import { startCollector, type Collector } from '../../src/collector/collector.ts';
import { KubeClient, loadKubeConfig } from '../../src/k8s/index.ts';
import { silentLogger } from '../../src/util/log.ts';
import { alive, startDaemon, stopPid, waitFor } from '../../scripts/cluster/daemon.ts';
import { kubeBin, startApiServer, type TestApiServer } from '../helpers/apiserver.ts';
import { render } from '../unit/packaging/lib/render.ts';
import { FrameSource, announcement, sendAll, until } from '../unit/collector/running.ts';

const ROOT = new URL('../../', import.meta.url).pathname.replace(/\/$/, '');
const NODE = join(ROOT, 'node_modules/.bin/node');
const INSTALL_TOKEN = 'collector-access-install-token';
const RELEASE_NS = 'podtap-system';

let api: TestApiServer;
let bin: string;
let dir: string;
let cmPid: number | undefined;
let collector: Collector;
let base: string;
/** a PATH where kubectl finds the plugin */
let pluginPath: string;
const users: Record<string, { token: string; kubeconfig: string }> = {};
const sockets: Socket[] = [];

/** One capture file per policy: [namespace, policy, announcement instance, ifindex]. */
const POLICIES = [
  ['team-a', 'web-debug', 1, 11],
  ['team-b', 'web-debug', 2, 12],
  ['team-b', 'db-debug', 3, 13],
] as const;

async function httpGet(path: string, token?: string, opts: { keep?: boolean } = {}): Promise<{ status: number; body: string; end?: Promise<void>; close?: () => void }> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { agent: false, headers: token ? { Authorization: `Bearer ${token}` } : {} }, (res) => {
      if (opts.keep && res.statusCode === 200) {
        res.resume();
        resolve({ status: 200, body: '', end: new Promise((r) => res.once('close', () => r())), close: () => res.destroy() });
        return;
      }
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** `kubectl podtap ARGS` as `user`: the real kubectl finds the plugin on PATH and hands it the arguments. */
async function podtap(user: string, args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const r = await execa(join(bin, 'kubectl'), ['podtap', ...args, '--kubeconfig', users[user]!.kubeconfig, '--collector-url', base], {
    reject: false,
    env: { PATH: `${pluginPath}:${process.env.PATH ?? ''}`, PODTAP_COLLECTOR_TOKEN: '' },
    cwd: dir,
    timeout: 60_000,
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

async function canI(user: string, namespace: string): Promise<boolean> {
  const r = await api.kubectl(['auth', 'can-i', CAPTURE_ACCESS.verb, `${CAPTURE_ACCESS.resource}.${CAPTURE_ACCESS.group}`, `--subresource=${CAPTURE_ACCESS.subresource}`, '-n', namespace, `--as=${user}`]);
  return r.stdout.trim() === 'yes';
}

const sa = (ns: string, name: string): string => `system:serviceaccount:${ns}:${name}`;

beforeAll(async () => {
  bin = await kubeBin();
  dir = await mkdtemp(join(tmpdir(), 'podtap-access-'));
  api = await startApiServer();
  await api.installCrds();

  // the aggregation of ClusterRoles into edit/admin/view is the controller-manager's: run that controller alone
  cmPid = startDaemon({
    name: 'kube-controller-manager',
    cmd: join(bin, 'kube-controller-manager'),
    args: [`--kubeconfig=${api.kubeconfig}`, '--controllers=clusterrole-aggregation', '--leader-elect=false', '--secure-port=0', '--profiling=false'],
    logFile: join(dir, 'kube-controller-manager.log'),
  });

  // the chart's RBAC as it renders (capture reading aggregated into edit/admin), its collector account included
  const rendered = await render({ values: { rbac: { aggregateToEdit: true } } }); // (released into podtap-system)
  const rbac = rendered.objects.filter((o) => ['ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding', 'ServiceAccount'].includes(o.kind));
  expect(rbac.map((o) => o.kind)).toContain('ClusterRoleBinding');
  await api.kubectl(['create', 'namespace', RELEASE_NS], { reject: true });
  await api.kubectl(['apply', '-f', '-'], { input: rbac.map((o) => stringify(o)).join('---\n'), reject: true });
  const collectorAccount = rendered.objects.find((o) => o.kind === 'Deployment' && o.metadata.name.endsWith('collector'));
  const account = (collectorAccount as unknown as { spec: { template: { spec: { serviceAccountName: string } } } }).spec.template.spec.serviceAccountName;
  const collectorKubeconfig = await api.kubeconfigFor(RELEASE_NS, account);

  // tenants: namespace rights only, through the built-in roles
  for (const [user, ns, role] of [['alice', 'team-a', 'edit'], ['bob', 'team-b', 'edit'], ['carol', 'team-a', 'view'], ['dave', 'team-b', null]] as const) {
    const kubeconfig = await api.kubeconfigFor(ns, user);
    // (another token of the same account, for the requests made here by hand)
    users[user] = { kubeconfig, token: await api.tokenFor(ns, user) };
    if (role) await api.kubectl(['-n', ns, 'create', 'rolebinding', `${user}-${role}`, `--clusterrole=${role}`, `--serviceaccount=${ns}:${user}`], { reject: true });
  }
  // dave may read the captures of one policy of team-b (resourceNames)
  await api.kubectl(['-n', 'team-b', 'create', 'role', 'web-debug-captures', `--verb=${CAPTURE_ACCESS.verb}`, `--resource=${CAPTURE_ACCESS.resource}.${CAPTURE_ACCESS.group}/${CAPTURE_ACCESS.subresource}`, '--resource-name=web-debug'], { reject: true });
  await api.kubectl(['-n', 'team-b', 'create', 'rolebinding', 'dave-web-debug', '--role=web-debug-captures', `--serviceaccount=team-b:dave`], { reject: true });
  await waitFor('the chart\'s roles aggregated into edit', async () => ((await canI(sa('team-a', 'alice'), 'team-a')) ? true : undefined), { timeoutMs: 60_000, logFile: join(dir, 'kube-controller-manager.log'), pid: cmPid });

  // the collector, authenticating as the chart's collector account
  await mkdir(join(dir, 'captures'));
  await writeFile(join(dir, 'api-token'), INSTALL_TOKEN);
  collector = await startCollector({
    logger: silentLogger,
    ingest: { host: '127.0.0.1', port: 0, workers: 0 },
    store: { dir: join(dir, 'captures') },
    http: {
      host: '127.0.0.1', port: 0, tokenFile: join(dir, 'api-token'),
      reviewer: kubeReviewer(new KubeClient(loadKubeConfig(collectorKubeconfig))), recheckMs: 1000, accessCacheMs: 500,
    },
  });
  base = `http://127.0.0.1:${collector.http!.port}`;

  // a file per policy, from datagrams as an agent sends them
  const src = new FrameSource();
  for (const [namespace, name, instance, ifindex] of POLICIES) {
    const s = createSocket('udp4');
    sockets.push(s);
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    await sendAll(s, collector.address.port, [announcement({ namespace, name }, [{ ifindex, namespace, pod: `${name}-pod` }], { instance })]);
    await until(() => collector.router.interfaces().some((i) => i.policy?.namespace === namespace && i.policy.name === name), 'the announcement');
    await sendAll(s, collector.address.port, src.frames(4, { ifindex, instance, cpu: 0 }));
  }
  await until(() => collector.store.list().length === POLICIES.length, 'a capture file per policy');

  // the plugin as krew installs it: an executable kubectl-podtap on PATH
  pluginPath = join(dir, 'bin');
  await mkdir(pluginPath);
  await writeFile(join(pluginPath, 'kubectl-podtap'), `#!/bin/sh\nexec '${NODE}' '${ROOT}/src/cli/kubectl-podtap.ts' "$@"\n`);
  await chmod(join(pluginPath, 'kubectl-podtap'), 0o755);
}, 300_000);

afterAll(async () => {
  for (const s of sockets) s.close();
  await collector?.close();
  if (cmPid !== undefined && alive(cmPid)) await stopPid(cmPid, 5_000);
  await api?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const fileOf = (namespace: string, policy: string): string => collector.store.list().find((e) => e.namespace === namespace && e.policy === policy)!.path;

describe('the collector\'s HTTP API authorizes each read in its namespace', () => {
  it('the RBAC the chart installs: edit (aggregated) reads captures in its namespace only, view does not', async () => {
    expect(await canI(sa('team-a', 'alice'), 'team-a')).toBe(true);
    expect(await canI(sa('team-a', 'alice'), 'team-b')).toBe(false);
    expect(await canI(sa('team-a', 'carol'), 'team-a')).toBe(false);
  });

  it.each([
    { description: 'no token', input: { token: undefined as string | undefined }, expected: /bearer token is required/ },
    { description: 'a token the API server does not know', input: { token: 'not-a-kubernetes-token' }, expected: /does not accept this token/ },
    { description: 'a token signed by nobody the API server trusts', input: { token: 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06YWRtaW4ifQ.c2ln' }, expected: /does not accept this token/ },
  ])('401 for $description', async ({ input, expected }) => {
    const r = await httpGet('/api/v1/captures?namespace=team-a', input.token);
    expect(r.status).toBe(401);
    expect(r.body).toMatch(expected);
  });

  const cases = [
    { description: 'alice lists team-a', input: { user: 'alice', path: () => '/api/v1/captures?namespace=team-a' }, expected: 200 },
    { description: 'alice lists team-b', input: { user: 'alice', path: () => '/api/v1/captures?namespace=team-b' }, expected: 403 },
    { description: 'alice downloads team-a\'s file', input: { user: 'alice', path: () => `/api/v1/captures/${encodeURIComponent(fileOf('team-a', 'web-debug'))}` }, expected: 200 },
    { description: 'alice downloads team-b\'s file', input: { user: 'alice', path: () => `/api/v1/captures/${encodeURIComponent(fileOf('team-b', 'web-debug'))}` }, expected: 403 },
    { description: 'alice asks for a file of team-b that does not exist (no oracle: 403, not 404)', input: { user: 'alice', path: () => '/api/v1/captures/team-b_web-debug/web-debug-20260101T000000Z-0.pcapng' }, expected: 403 },
    { description: 'alice asks for a file of her own namespace that does not exist', input: { user: 'alice', path: () => '/api/v1/captures/team-a_web-debug/web-debug-20260101T000000Z-0.pcapng' }, expected: 404 },
    { description: 'alice streams team-b', input: { user: 'alice', path: () => '/stream?namespace=team-b' }, expected: 403 },
    { description: 'alice streams every namespace', input: { user: 'alice', path: () => '/stream' }, expected: 403 },
    { description: 'alice reads the collector\'s counters of every namespace', input: { user: 'alice', path: () => '/api/v1/status' }, expected: 403 },
    { description: 'carol (view in team-a) lists team-a', input: { user: 'carol', path: () => '/api/v1/captures?namespace=team-a' }, expected: 403 },
    { description: 'carol downloads team-a\'s file', input: { user: 'carol', path: () => `/api/v1/captures/${encodeURIComponent(fileOf('team-a', 'web-debug'))}` }, expected: 403 },
    { description: 'bob downloads team-b\'s file', input: { user: 'bob', path: () => `/api/v1/captures/${encodeURIComponent(fileOf('team-b', 'db-debug'))}` }, expected: 200 },
    { description: 'dave (one policy of team-b) downloads its file', input: { user: 'dave', path: () => `/api/v1/captures/${encodeURIComponent(fileOf('team-b', 'web-debug'))}` }, expected: 200 },
    { description: 'dave downloads another policy\'s file', input: { user: 'dave', path: () => `/api/v1/captures/${encodeURIComponent(fileOf('team-b', 'db-debug'))}` }, expected: 403 },
    { description: 'dave streams team-b as a whole', input: { user: 'dave', path: () => '/stream?namespace=team-b' }, expected: 403 },
    { description: 'the install token reads the counters (break-glass)', input: { user: 'install', path: () => '/api/v1/status' }, expected: 200 },
    { description: 'the install token downloads team-b\'s file', input: { user: 'install', path: () => `/api/v1/captures/${encodeURIComponent(fileOf('team-b', 'db-debug'))}` }, expected: 200 },
  ];
  it.each(cases)('$description: $expected', async ({ input, expected }) => {
    const token = input.user === 'install' ? INSTALL_TOKEN : users[input.user]!.token;
    const r = await httpGet(input.path(), token, { keep: true });
    r.close?.();
    expect(r.status, r.body).toBe(expected);
    if (expected === 403) expect(r.body).toContain('sniffpolicies/captures');
  });

  it('lists hold only what the reader may read: alice every namespace → team-a only; dave team-b → web-debug only', async () => {
    const all = JSON.parse((await httpGet('/api/v1/captures', users.alice!.token)).body) as { items: { namespace: string; policy: string }[] };
    expect(all.items.map((e) => `${e.namespace}/${e.policy}`)).toEqual(['team-a/web-debug']);
    const dave = JSON.parse((await httpGet('/api/v1/captures?namespace=team-b', users.dave!.token)).body) as { items: { namespace: string; policy: string }[] };
    expect(dave.items.map((e) => `${e.namespace}/${e.policy}`)).toEqual(['team-b/web-debug']);
    const admin = JSON.parse((await httpGet('/api/v1/captures', INSTALL_TOKEN)).body) as { items: unknown[] };
    expect(admin.items).toHaveLength(POLICIES.length);
  });

  it('a live stream ends when the reader\'s grant is revoked', async () => {
    await api.kubectl(['-n', 'team-b', 'create', 'rolebinding', 'erin-edit', '--clusterrole=edit', '--serviceaccount=team-b:erin'], { reject: true });
    const token = await api.tokenFor('team-b', 'erin');
    const s = await httpGet('/stream?namespace=team-b', token, { keep: true });
    expect(s.status).toBe(200);
    let ended = false;
    void s.end!.then(() => (ended = true));
    await new Promise((r) => setTimeout(r, 2500));
    expect(ended, 'the stream ended while the grant held').toBe(false);
    await api.kubectl(['-n', 'team-b', 'delete', 'rolebinding', 'erin-edit'], { reject: true });
    await until(() => ended, 'the stream to end after the RoleBinding was deleted', 15_000);
  });
});

describe('kubectl podtap with the user\'s own credentials', () => {
  it('alice lists team-a', async () => {
    const r = await podtap('alice', ['list', '-n', 'team-a']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain(fileOf('team-a', 'web-debug'));
  });

  it('alice lists every namespace and sees only team-a', async () => {
    const r = await podtap('alice', ['list', '-A']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain(fileOf('team-a', 'web-debug'));
    expect(r.stdout).not.toContain('team-b');
  });

  it.each([
    { description: 'alice lists team-b', input: { user: 'alice', args: ['list', '-n', 'team-b'] }, expected: /may not read captures in namespace team-b/ },
    { description: 'alice fetches team-b\'s file', input: { user: 'alice', args: () => ['fetch', fileOf('team-b', 'web-debug'), '-o', '-'] }, expected: /may not read captures in namespace team-b/ },
    { description: 'alice fetches team-b\'s newest by policy', input: { user: 'alice', args: ['fetch', '-n', 'team-b', '--policy', 'web-debug', '-o', '-'] }, expected: /may not read captures in namespace team-b/ },
    { description: 'alice captures in team-b', input: { user: 'alice', args: ['capture', '-n', 'team-b', '-l', 'app=web', '--for', '2s', '-w', 'x.pcapng'] }, expected: /may not read captures in namespace team-b/ },
    { description: 'carol (view) lists team-a', input: { user: 'carol', args: ['list', '-n', 'team-a'] }, expected: /may not read captures in namespace team-a/ },
  ])('refused: $description', async ({ input, expected }) => {
    const r = await podtap(input.user, typeof input.args === 'function' ? input.args() : input.args);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(expected);
    expect(r.stderr).toContain('kubectl auth can-i get sniffpolicies --subresource=captures');
    expect(r.stdout).toBe('');
  });

  it('alice fetches team-a\'s file: the bytes the collector holds', async () => {
    const path = fileOf('team-a', 'web-debug');
    const r = await podtap('alice', ['fetch', path, '-w', join(dir, 'a.pcapng')]);
    expect(r.exitCode, r.stderr).toBe(0);
    const got = await readFile(join(dir, 'a.pcapng'));
    expect(got.length).toBeGreaterThan(0);
    expect(got.equals((await readFile(join(dir, 'captures', path))).subarray(0, got.length))).toBe(true);
  });

  it('alice captures in team-a: her policy is created, streamed and deleted', async () => {
    const r = await podtap('alice', ['capture', '-n', 'team-a', '-l', 'app=web', '--for', '2s', '-w', join(dir, 'live.pcapng')]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/deleted SniffPolicy team-a\/podtap-capture-/);
    expect((await readFile(join(dir, 'live.pcapng'))).readUInt32LE(0)).toBe(0x0a0d0d0a); // a pcapng section
  });
});

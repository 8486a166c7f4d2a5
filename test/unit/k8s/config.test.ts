import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { loadKubeConfig } from '../../../src/k8s/index.ts';
import { UserError } from '../../../src/util/errors.ts';

const dir = mkdtempSync(join(tmpdir(), 'podtap-kubeconfig-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function kubeconfig(user: Record<string, unknown>, cluster: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): string {
  const file = join(dir, `kc-${++n}`);
  writeFileSync(
    file,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server: 'https://198.18.0.1:6443', ...cluster } }],
      users: [{ name: 'u', user }],
      contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'u', namespace: 'team' } }],
      'current-context': 'ctx',
      ...extra,
    }),
  );
  return file;
}

describe('loadKubeConfig', () => {
  writeFileSync(join(dir, 'token'), 'from-file\n');
  writeFileSync(join(dir, 'ca.pem'), 'CA');
  it.each([
    { description: 'a token', user: { token: 'abc' }, cluster: {}, expected: { headers: { Authorization: 'Bearer abc' } } },
    { description: 'a token file, relative to the kubeconfig', user: { tokenFile: 'token' }, cluster: {}, expected: { headers: { Authorization: 'Bearer from-file' } } },
    { description: 'basic auth', user: { username: 'me', password: 'pw' }, cluster: {}, expected: { headers: { Authorization: `Basic ${Buffer.from('me:pw').toString('base64')}` } } },
    {
      description: 'client certificate and CA as data',
      user: { 'client-certificate-data': Buffer.from('CERT').toString('base64'), 'client-key-data': Buffer.from('KEY').toString('base64') },
      cluster: { 'certificate-authority-data': Buffer.from('CA').toString('base64'), 'tls-server-name': 'api.internal' },
      expected: { headers: {}, tls: { ca: 'CA', cert: 'CERT', key: 'KEY', serverName: 'api.internal' } },
    },
    { description: 'a CA file and skip-verify', user: {}, cluster: { 'certificate-authority': 'ca.pem', 'insecure-skip-tls-verify': true }, expected: { headers: {}, tls: { ca: 'CA', insecureSkipVerify: true } } },
  ])('$description', async ({ user, cluster, expected }) => {
    const access = loadKubeConfig(kubeconfig(user, cluster), {});
    expect(access.server).toBe('https://198.18.0.1:6443');
    expect(access.namespace).toBe('team');
    const cred = await access.credentials();
    expect(cred.headers).toEqual(expected.headers);
    const tls = expected.tls ?? {};
    for (const [k, v] of Object.entries(tls)) {
      const got = cred.tls[k as keyof typeof cred.tls];
      expect(Buffer.isBuffer(got) ? got.toString() : got, k).toBe(v);
    }
  });

  it('KUBECONFIG: several files, the first definition wins', () => {
    const a = kubeconfig({ token: 'a' }, { server: 'https://198.18.0.2' });
    const b = kubeconfig({ token: 'b' }, { server: 'https://198.18.0.3' }, { 'current-context': 'other' });
    const access = loadKubeConfig(undefined, { KUBECONFIG: `${join(dir, 'missing')}:${a}:${b}` });
    expect(access.server).toBe('https://198.18.0.2');
    expect(access.source).toBe('KUBECONFIG');
  });

  it('an exec plugin goes through client-node', async () => {
    const out = JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1beta1', kind: 'ExecCredential', status: { token: 'from-exec' } });
    const access = loadKubeConfig(kubeconfig({ exec: { apiVersion: 'client.authentication.k8s.io/v1beta1', command: '/bin/sh', args: ['-c', `echo '${out}'`], interactiveMode: 'Never' } }), {});
    const cred = await access.credentials();
    expect(cred.headers.Authorization).toBe('Bearer from-exec');
  });

  it.each([
    { description: 'nothing to load', input: () => loadKubeConfig(undefined, { HOME: dir }), expected: /no Kubernetes configuration found|kubeconfig/ },
    { description: 'a missing file', input: () => loadKubeConfig(join(dir, 'nope'), {}), expected: /cannot read the kubeconfig/ },
    { description: 'no current context', input: () => loadKubeConfig(kubeconfig({}, {}, { 'current-context': '' }), {}), expected: /has no current-context/ },
  ])('refuses $description with a UserError', ({ input, expected }) => {
    let err: unknown;
    try {
      input();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(expected);
  });
});

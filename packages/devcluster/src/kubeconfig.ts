/**
 * A kubeconfig for the embedded API: plain HTTP, no credentials (the
 * server authenticates nobody — it is a development stand-in listening on
 * loopback), one context named after it.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { stringify } from 'yaml';

export const CONTEXT_NAME = 'podtap-devcluster';

export function kubeconfigYaml(url: string, opts: { namespace?: string } = {}): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    preferences: {},
    // client-node v2 refuses http:// servers unless TLS verification is
    // marked as skipped; there is no TLS to verify, so this changes nothing else.
    clusters: [{ name: CONTEXT_NAME, cluster: { server: url, 'insecure-skip-tls-verify': true } }],
    users: [{ name: CONTEXT_NAME, user: {} }],
    contexts: [{ name: CONTEXT_NAME, context: { cluster: CONTEXT_NAME, user: CONTEXT_NAME, namespace: opts.namespace ?? 'default' } }],
    'current-context': CONTEXT_NAME,
  });
}

export async function writeKubeconfig(path: string, url: string, opts: { namespace?: string } = {}): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, kubeconfigYaml(url, opts), { mode: 0o600 });
}

// How the agent tells an uninstall (detach everything) from a restart (keep
// capturing for the next agent) when it gets SIGTERM. The happy path against
// the embedded API is in test/unit/packaging/dryrun.test.ts; these are the
// answers an API server can give, table-driven, through a stand-in client.
import { describe, expect, it } from 'vitest';
import { uninstalling } from '../../../src/agent/uninstall.ts';
import { KubeApiError, type KubeClient } from '../../../src/k8s/index.ts';
import { silentLogger } from '../../../src/util/log.ts';

type Answer = object | KubeApiError | Error;

function client(pod: Answer, ds: Answer): KubeClient {
  return {
    get: async (res: { plural: string }) => {
      const a = res.plural === 'pods' ? pod : ds;
      if (a instanceof Error) throw a;
      return a;
    },
  } as unknown as KubeClient;
}

const owned = { metadata: { ownerReferences: [{ kind: 'DaemonSet', name: 'podtap-agent' }] } };
const err = (code: number) => new KubeApiError(code, 'GET', '/x', { code, reason: 'x' });

const table: { description: string; pod: Answer; ds: Answer; expected: boolean }[] = [
  { description: 'DaemonSet in place: a restart', pod: owned, ds: { metadata: {} }, expected: false },
  { description: 'DaemonSet being deleted: an uninstall', pod: owned, ds: { metadata: { deletionTimestamp: '2026-01-01T00:00:00Z' } }, expected: true },
  { description: 'DaemonSet gone: an uninstall', pod: owned, ds: err(404), expected: true },
  { description: 'pod not owned by a DaemonSet: not ours to decide', pod: { metadata: {} }, ds: err(404), expected: false },
  { description: 'RBAC gone (403): an uninstall that skipped the hook', pod: err(403), ds: err(403), expected: true },
  { description: 'token revoked (401): the same', pod: err(401), ds: err(401), expected: true },
  { description: 'API server down: keep capturing', pod: new Error('ECONNREFUSED'), ds: err(404), expected: false },
  { description: 'API server error (500): keep capturing', pod: err(500), ds: err(404), expected: false },
  { description: 'DaemonSet read fails (500): keep capturing', pod: owned, ds: err(500), expected: false },
];

describe('uninstalling', () => {
  it.each(table)('$description', async ({ pod, ds, expected }) => {
    expect(await uninstalling(client(pod, ds), 'podtap-system', silentLogger)).toBe(expected);
  });
  it('never decides without a namespace', async () => {
    expect(await uninstalling(client(owned, err(404)), undefined, silentLogger)).toBe(false);
  });
});

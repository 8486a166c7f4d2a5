import { describe, expect, it } from 'vitest';
import { Store, type KubeObject } from '../../../src/k8s/index.ts';

const obj = (ns: string, name: string, labels: Record<string, string> = {}): KubeObject => ({ metadata: { namespace: ns, name, labels } });

describe('Store', () => {
  const byApp = (o: KubeObject) => (o.metadata.labels?.app ? [o.metadata.labels.app] : []);
  const byNs = (o: KubeObject) => [o.metadata.namespace!];

  it('indexes on insert, moves on update, forgets on remove', () => {
    const s = new Store<KubeObject>({ byApp, byNs });
    s.upsert(obj('a', 'p1', { app: 'web' }));
    s.upsert(obj('a', 'p2', { app: 'web' }));
    s.upsert(obj('b', 'p1', { app: 'db' }));
    expect(s.byIndex('byApp', 'web').map((o) => o.metadata.name)).toEqual(['p1', 'p2']);
    expect(s.countIndex('byNs', 'a')).toBe(2);
    const old = s.upsert(obj('a', 'p2', { app: 'db' }));
    expect(old?.metadata.labels).toEqual({ app: 'web' });
    expect(s.byIndex('byApp', 'web').map((o) => o.metadata.name)).toEqual(['p1']);
    expect(s.byIndex('byApp', 'db').map((o) => `${o.metadata.namespace}/${o.metadata.name}`).sort()).toEqual(['a/p2', 'b/p1']);
    expect(s.remove('a/p1')?.metadata.name).toBe('p1');
    expect(s.byIndex('byApp', 'web')).toEqual([]);
    expect([...s.indexValues('byApp')]).toEqual(['db']);
    expect(s.get('b/p1')?.metadata.name).toBe('p1');
    expect(s.size).toBe(2);
  });

  it('cluster-scoped objects are keyed by name; an unknown index is an error', () => {
    const s = new Store<KubeObject>();
    s.upsert({ metadata: { name: 'node-a' } });
    expect(s.get('node-a')).toBeDefined();
    expect(() => s.byIndex('nope', 'x')).toThrow('no index named nope');
  });
});

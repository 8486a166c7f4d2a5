/**
 * The cluster's build cache (Go module and build caches, the Kubernetes
 * programs, buildah's storage, the image archives) is declared once per
 * language (scripts/cluster/build.sh and scripts/cluster/images.ts read
 * PODTAP_CLUSTER_CACHE with the same default) and lies outside every host
 * directory the chart mounts into a pod: the agent's compile cache is a
 * read-write hostPath, and the cluster's programs must not be writable from it.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CACHE } from '../../../scripts/cluster/images.ts';
import { ROOT, render } from './lib/render.ts';

const within = (dir: string, parent: string) => dir === parent || dir.startsWith(`${parent.replace(/\/$/, '')}/`);

describe('the cluster build cache', () => {
  it('has one default, in build.sh and images.ts alike', async () => {
    const sh = await readFile(join(ROOT, 'scripts/cluster/build.sh'), 'utf8');
    const m = /^CACHE=\$\{PODTAP_CLUSTER_CACHE:-([^}]+)\}$/m.exec(sh);
    expect(m, 'build.sh declares CACHE=${PODTAP_CLUSTER_CACHE:-…}').not.toBeNull();
    // (images.ts's CACHE is the default unless the variable is set, as in a test run it is not)
    expect(process.env.PODTAP_CLUSTER_CACHE).toBeUndefined();
    expect(CACHE).toBe(m![1]);
  });

  it.each([{ description: 'default values' }])('is under no hostPath the chart mounts ($description)', async () => {
    const { objects } = await render();
    const hostPaths: string[] = [];
    for (const o of objects) {
      const spec = (o as { spec?: { template?: { spec?: { volumes?: { hostPath?: { path: string } }[] } } } }).spec?.template?.spec;
      for (const v of spec?.volumes ?? []) if (v.hostPath) hostPaths.push(v.hostPath.path);
    }
    expect(hostPaths).toContain('/var/cache/podtap'); // the agent's compile cache: the case this guards
    for (const p of hostPaths) expect(within(CACHE, p), `${CACHE} lies under the hostPath ${p}`).toBe(false);
  }, 180_000); // the first render compiles helm-render
});

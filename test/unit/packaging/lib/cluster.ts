/** The embedded Kubernetes API and kubectl, for dry runs of rendered manifests. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { stringify } from 'yaml';
import { startApiServer, writeKubeconfig, type ApiServer, type StartOptions } from '@podtap/devcluster';
import { ROOT, type K8sObject } from './render.ts';

export interface DevCluster {
  api: ApiServer;
  dir: string;
  kubectl(args: string[], input?: string): Promise<{ exitCode: number; stdout: string; stderr: string }>;
  /** kubectl apply (with --dry-run=server unless real) of these objects. */
  apply(objects: K8sObject[], opts?: { real?: boolean }): Promise<{ exitCode: number; stdout: string; stderr: string }>;
  close(): Promise<void>;
}

export async function startDevCluster(opts: StartOptions = {}): Promise<DevCluster> {
  const api = await startApiServer({ port: 0, host: '127.0.0.1', ...opts });
  const dir = await mkdtemp(join(tmpdir(), 'podtap-packaging-'));
  const kubeconfig = join(dir, 'kubeconfig');
  await writeKubeconfig(kubeconfig, api.url);
  const env = { KUBECONFIG: kubeconfig, KUBECACHEDIR: join(dir, 'cache') };
  const kubectl = async (args: string[], input?: string) => {
    const r = await execa('kubectl', args, { env, reject: false, input, cwd: ROOT });
    return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
  };
  let n = 0;
  return {
    api,
    dir,
    kubectl,
    async apply(objects, o = {}) {
      const file = join(dir, `apply-${n++}.yaml`);
      await writeFile(file, objects.map((x) => `---\n${stringify(x)}`).join(''));
      return kubectl(['apply', ...(o.real ? [] : ['--dry-run=server']), '-f', file]);
    },
    async close() {
      await api.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Finding the cluster: an explicit kubeconfig file, else $KUBECONFIG, else the
 * pod's service account (in-cluster), else ~/.kube/config. Unlike
 * KubeConfig.loadFromDefault we never fall back to an unauthenticated
 * http://localhost:8080: a controller talking to nothing should say so.
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { ExitCode, UserError } from '../util/errors.ts';

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface KubeConfigSource {
  /** Where the configuration came from: a file path, "KUBECONFIG" or "in-cluster". */
  source: string;
}

export function loadKubeConfig(path?: string, env: NodeJS.ProcessEnv = process.env): KubeConfig & KubeConfigSource {
  const kc = new KubeConfig() as KubeConfig & KubeConfigSource;
  try {
    if (path) {
      kc.loadFromFile(path);
      kc.source = path;
    } else if (env.KUBECONFIG) {
      kc.loadFromDefault();
      kc.source = 'KUBECONFIG';
    } else if (env.KUBERNETES_SERVICE_HOST && existsSync(join(SA_DIR, 'token'))) {
      kc.loadFromCluster();
      kc.source = 'in-cluster';
    } else if (existsSync(join(homedir(), '.kube', 'config'))) {
      kc.loadFromFile(join(homedir(), '.kube', 'config'));
      kc.source = join(homedir(), '.kube', 'config');
    } else {
      throw new UserError('no Kubernetes configuration found', {
        exitCode: ExitCode.usage,
        hint: 'Pass --kubeconfig FILE, set KUBECONFIG, or run in a pod with a service account.',
      });
    }
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError(`cannot load the Kubernetes configuration${path ? ` from ${path}` : ''}`, { exitCode: ExitCode.usage, cause: err });
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) {
    throw new UserError(`the Kubernetes configuration (${kc.source}) has no current cluster`, {
      exitCode: ExitCode.usage,
      hint: 'Set current-context, or pass another --kubeconfig.',
    });
  }
  allowPlainHttp(kc);
  return kc;
}

/** The namespace this process runs in: $POD_NAMESPACE, the service account's, or undefined. */
export function podNamespace(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.POD_NAMESPACE) return env.POD_NAMESPACE;
  const file = join(SA_DIR, 'namespace');
  return existsSync(file) ? readFileSync(file, 'utf8').trim() || undefined : undefined;
}

/**
 * kubectl and client-go talk to a plain http:// server (the embedded
 * development API, `kubectl proxy`) with the kubeconfig as it is; client-node
 * v2 refuses unless insecure-skip-tls-verify is set, although there is no TLS
 * to verify. Set it for http:// clusters only, so one kubeconfig works for
 * every tool; https:// clusters are untouched.
 */
function allowPlainHttp(kc: KubeConfig): void {
  kc.clusters = kc.clusters.map((c) => (c.server.startsWith('http://') && !c.skipTLSVerify ? { ...c, skipTLSVerify: true } : c));
}

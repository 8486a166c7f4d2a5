/**
 * etcd and kube-apiserver as scripts/cluster.sh runs them and as the test
 * helper (test/helpers/apiserver.ts) runs them: one place for their flags, so
 * the tests' API server is the cluster's.
 *
 * A real control plane: TLS everywhere (etcd's clients and peers included),
 * client certificates and ServiceAccount tokens as the ways in, the Node and
 * RBAC authorizers, NodeRestriction on top of the default admission plugins
 * (which include ValidatingAdmissionPolicy, GA and on by default).
 */
import { join } from 'node:path';
import { makePki, makeServiceAccountKey, type CertSpec, type Pki } from './pki.ts';

export interface ControlPlaneAddresses {
  /** Address the API server advertises (the `kubernetes` Service's endpoint). */
  advertise: string;
  /** Address it listens on (0.0.0.0 in a cluster's namespace, 127.0.0.1 in tests). */
  bind: string;
  apiPort: number;
  etcdClientPort: number;
  etcdPeerPort: number;
  /** Service CIDRs, comma-separated (IPv4 first; a second, IPv6, makes it dual-stack). */
  serviceCidrs: string;
  /** The first address of each Service CIDR: the `kubernetes` Service's ClusterIPs. */
  kubernetesServiceIps: string[];
  /** Extra addresses the serving certificate covers. */
  extraIps?: string[];
}

export const SERVICE_ACCOUNT_ISSUER = 'https://kubernetes.default.svc.cluster.local';

/** The certificates of the control plane (and, when @node names one, of its kubelet and kube-proxy). */
export function controlPlaneCerts(a: ControlPlaneAddresses, node?: { name: string; ips: string[] }): CertSpec[] {
  const certs: CertSpec[] = [
    {
      name: 'apiserver',
      cn: 'kube-apiserver',
      usage: 'server',
      ips: [...new Set(['127.0.0.1', a.advertise, ...a.kubernetesServiceIps, ...(a.extraIps ?? [])])],
      dns: ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local'],
    },
    { name: 'etcd-server', cn: 'etcd', usage: 'both', ips: ['127.0.0.1'], dns: ['localhost'] },
    { name: 'apiserver-etcd-client', cn: 'kube-apiserver-etcd-client', usage: 'client' },
    { name: 'apiserver-kubelet-client', cn: 'kube-apiserver-kubelet-client', groups: ['system:masters'], usage: 'client' },
    { name: 'admin', cn: 'kubernetes-admin', groups: ['system:masters'], usage: 'client' },
    { name: 'controller-manager', cn: 'system:kube-controller-manager', usage: 'client' },
    { name: 'scheduler', cn: 'system:kube-scheduler', usage: 'client' },
  ];
  if (node) {
    certs.push(
      { name: 'kubelet-client', cn: `system:node:${node.name}`, groups: ['system:nodes'], usage: 'client' },
      { name: 'kubelet-server', cn: `system:node:${node.name}`, groups: ['system:nodes'], usage: 'server', ips: node.ips, dns: [node.name] },
      { name: 'kube-proxy', cn: 'system:kube-proxy', usage: 'client' },
    );
  }
  return certs;
}

export interface ControlPlaneFiles {
  pki: Pki;
  saKey: string;
  saPub: string;
}

export async function makeControlPlanePki(dir: string, a: ControlPlaneAddresses, node?: { name: string; ips: string[] }): Promise<ControlPlaneFiles> {
  const pki = await makePki(dir, 'podtap-cluster-ca', controlPlaneCerts(a, node));
  const sa = await makeServiceAccountKey(dir);
  return { pki, saKey: sa.key, saPub: sa.pub };
}

export function etcdArgs(f: ControlPlaneFiles, a: ControlPlaneAddresses, dataDir: string): string[] {
  const p = f.pki;
  return [
    '--name=default',
    `--data-dir=${dataDir}`,
    `--listen-client-urls=https://127.0.0.1:${a.etcdClientPort}`,
    `--advertise-client-urls=https://127.0.0.1:${a.etcdClientPort}`,
    `--listen-peer-urls=https://127.0.0.1:${a.etcdPeerPort}`,
    `--initial-advertise-peer-urls=https://127.0.0.1:${a.etcdPeerPort}`,
    `--initial-cluster=default=https://127.0.0.1:${a.etcdPeerPort}`,
    '--listen-metrics-urls=',
    `--cert-file=${p.cert('etcd-server')}`,
    `--key-file=${p.key('etcd-server')}`,
    `--trusted-ca-file=${p.caCert}`,
    '--client-cert-auth=true',
    `--peer-cert-file=${p.cert('etcd-server')}`,
    `--peer-key-file=${p.key('etcd-server')}`,
    `--peer-trusted-ca-file=${p.caCert}`,
    '--peer-client-cert-auth=true',
    // One member on a shared 2-core machine: a slow fsync must not cost the leader.
    '--heartbeat-interval=250',
    '--election-timeout=2500',
    '--quota-backend-bytes=2147483648',
    '--log-level=warn',
  ];
}

export function apiserverArgs(f: ControlPlaneFiles, a: ControlPlaneAddresses, extra: string[] = []): string[] {
  const p = f.pki;
  return [
    `--advertise-address=${a.advertise}`,
    `--bind-address=${a.bind}`,
    `--secure-port=${a.apiPort}`,
    `--etcd-servers=https://127.0.0.1:${a.etcdClientPort}`,
    `--etcd-cafile=${p.caCert}`,
    `--etcd-certfile=${p.cert('apiserver-etcd-client')}`,
    `--etcd-keyfile=${p.key('apiserver-etcd-client')}`,
    `--tls-cert-file=${p.cert('apiserver')}`,
    `--tls-private-key-file=${p.key('apiserver')}`,
    `--client-ca-file=${p.caCert}`,
    '--authorization-mode=Node,RBAC',
    // The defaults (NamespaceLifecycle, ServiceAccount, PodSecurity, the
    // webhook and policy plugins, ValidatingAdmissionPolicy, …) plus what a
    // production cluster adds: a kubelet may only touch its own Node and pods.
    '--enable-admission-plugins=NodeRestriction',
    `--service-account-issuer=${SERVICE_ACCOUNT_ISSUER}`,
    `--service-account-key-file=${f.saPub}`,
    `--service-account-signing-key-file=${f.saKey}`,
    `--service-cluster-ip-range=${a.serviceCidrs}`,
    `--kubelet-client-certificate=${p.cert('apiserver-kubelet-client')}`,
    `--kubelet-client-key=${p.key('apiserver-kubelet-client')}`,
    `--kubelet-certificate-authority=${p.caCert}`,
    '--kubelet-preferred-address-types=InternalIP',
    '--allow-privileged=true',
    '--profiling=false',
    '--endpoint-reconciler-type=lease',
    ...extra,
  ];
}

export function controllerManagerArgs(f: ControlPlaneFiles, kubeconfig: string, podCidrs: string, serviceCidrs: string): string[] {
  return [
    `--kubeconfig=${kubeconfig}`,
    `--authentication-kubeconfig=${kubeconfig}`,
    `--authorization-kubeconfig=${kubeconfig}`,
    '--bind-address=127.0.0.1',
    '--use-service-account-credentials=true',
    `--service-account-private-key-file=${f.saKey}`,
    `--root-ca-file=${f.pki.caCert}`,
    `--cluster-signing-cert-file=${f.pki.caCert}`,
    `--cluster-signing-key-file=${f.pki.caKey}`,
    // The node's pod ranges come from here (node.spec.podCIDRs), as in kubeadm
    // clusters; the CNI configuration is written from them.
    '--allocate-node-cidrs=true',
    `--cluster-cidr=${podCidrs}`,
    '--node-cidr-mask-size-ipv4=24',
    '--node-cidr-mask-size-ipv6=64',
    `--service-cluster-ip-range=${serviceCidrs}`,
    '--leader-elect=false',
    '--profiling=false',
  ];
}

export function schedulerArgs(kubeconfig: string): string[] {
  return [
    `--kubeconfig=${kubeconfig}`,
    `--authentication-kubeconfig=${kubeconfig}`,
    `--authorization-kubeconfig=${kubeconfig}`,
    '--bind-address=127.0.0.1',
    '--leader-elect=false',
    '--profiling=false',
  ];
}

export const pkiDir = (state: string) => join(state, 'pki');

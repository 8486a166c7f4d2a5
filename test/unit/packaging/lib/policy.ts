/**
 * The chart's security rules, as checks over rendered objects. Each returns
 * the violations it finds (empty = the rule holds), naming object and container.
 */
import type { K8sObject } from './render.ts';

export interface Container {
  name: string;
  command?: string[];
  args?: string[];
  securityContext?: {
    privileged?: boolean;
    runAsNonRoot?: boolean;
    runAsUser?: number;
    readOnlyRootFilesystem?: boolean;
    allowPrivilegeEscalation?: boolean;
    capabilities?: { add?: string[]; drop?: string[] };
    seccompProfile?: { type: string };
  };
  resources?: { requests?: Record<string, unknown>; limits?: Record<string, unknown> };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean; mountPropagation?: string }[];
  env?: { name: string; value?: string; valueFrom?: Record<string, unknown> }[];
}

export interface PodSpec {
  hostNetwork?: boolean;
  hostPID?: boolean;
  hostIPC?: boolean;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; seccompProfile?: { type: string } };
  containers: Container[];
  initContainers?: Container[];
  volumes?: { name: string; hostPath?: { path: string } }[];
}

/**
 * Capabilities each container may add, and why (docs/security.md). Any other
 * addition, in any container, is a violation.
 */
export const CAPABILITY_ALLOW_LIST: Record<string, string[]> = {
  // the agent's: the table in docs/security.md, measured (chart.test.ts checks the two agree)
  agent: ['BPF', 'NET_ADMIN', 'PERFMON', 'SYS_PTRACE'],
  bpffs: ['SYS_ADMIN', 'SYS_CHROOT', 'SYS_PTRACE'],
  'captures-owner': ['CHOWN'],
};

/** Added to the agent's only with agent.netnsFallback (its netns mount): `ip -n` enters namespaces (setns). */
export const NETNS_FALLBACK_CAPABILITIES = ['SYS_ADMIN'];

/** Roles whose main containers must run as non-root with a read-only root filesystem. */
export const NON_ROOT_ROLES = ['controller', 'collector', 'uninstall'];

export interface Workload {
  obj: K8sObject;
  role: string;
  pod: PodSpec;
}

export function workloads(objects: K8sObject[]): Workload[] {
  return objects
    .filter((o) => ['Deployment', 'DaemonSet', 'Job', 'StatefulSet', 'Pod'].includes(o.kind))
    .map((o) => {
      const spec = o.spec as { template?: { spec: PodSpec } } & PodSpec;
      return { obj: o, role: o.metadata.labels?.['app.kubernetes.io/component'] ?? '?', pod: spec.template?.spec ?? spec };
    });
}

function allContainers(w: Workload): { c: Container; init: boolean; where: string }[] {
  return [
    ...(w.pod.initContainers ?? []).map((c) => ({ c, init: true, where: `${w.obj.kind}/${w.obj.metadata.name} init container ${c.name}` })),
    ...w.pod.containers.map((c) => ({ c, init: false, where: `${w.obj.kind}/${w.obj.metadata.name} container ${c.name}` })),
  ];
}

export function policyViolations(objects: K8sObject[]): string[] {
  const out: string[] = [];
  for (const w of workloads(objects)) {
    if (w.pod.hostIPC) out.push(`${w.obj.kind}/${w.obj.metadata.name}: hostIPC`);
    for (const { c, init, where } of allContainers(w)) {
      const sc = c.securityContext;
      if (!sc) {
        out.push(`${where}: no securityContext`);
        continue;
      }
      if (sc.privileged !== false) out.push(`${where}: privileged is not explicitly false`);
      if (!c.resources?.requests?.cpu || !c.resources?.requests?.memory) out.push(`${where}: no cpu/memory requests`);
      if (!c.resources?.limits?.cpu || !c.resources?.limits?.memory) out.push(`${where}: no cpu/memory limits`);
      if (!sc.capabilities?.drop?.includes('ALL')) out.push(`${where}: does not drop ALL capabilities`);
      const allowed = [...(CAPABILITY_ALLOW_LIST[c.name] ?? []), ...(c.name === 'agent' && c.volumeMounts?.some((m) => m.name === 'netns') ? NETNS_FALLBACK_CAPABILITIES : [])];
      for (const cap of sc.capabilities?.add ?? []) {
        if (!allowed.includes(cap)) out.push(`${where}: adds ${cap}, not in its allow-list [${allowed.join(', ')}]`);
      }
      if (sc.readOnlyRootFilesystem !== true) out.push(`${where}: root filesystem is writable`);
      const seccomp = sc.seccompProfile?.type ?? w.pod.securityContext?.seccompProfile?.type;
      if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost') out.push(`${where}: seccomp profile ${seccomp ?? 'unset'} (neither RuntimeDefault nor Localhost)`);
      // Kubernetes' own validation refuses this pair (the embedded API does not check it)
      if (sc.allowPrivilegeEscalation === false && (sc.capabilities?.add ?? []).includes('SYS_ADMIN')) {
        out.push(`${where}: allowPrivilegeEscalation=false with SYS_ADMIN (Kubernetes refuses it)`);
      }
      for (const m of c.volumeMounts ?? []) {
        // Kubernetes allows Bidirectional only in privileged containers.
        if (m.mountPropagation === 'Bidirectional') out.push(`${where}: Bidirectional mount propagation of ${m.mountPath}`);
      }
      if (NON_ROOT_ROLES.includes(w.role) && !init) {
        const nonRoot = sc.runAsNonRoot ?? w.pod.securityContext?.runAsNonRoot;
        const uid = sc.runAsUser ?? w.pod.securityContext?.runAsUser;
        if (nonRoot !== true || uid === 0 || uid === undefined) out.push(`${where}: not forced to run as non-root`);
        if (sc.allowPrivilegeEscalation !== false) out.push(`${where}: allowPrivilegeEscalation is not false`);
        if ((sc.capabilities?.add ?? []).length) out.push(`${where}: adds capabilities`);
      }
    }
  }
  return out;
}

/** YAML numbers Go printed in exponent form (1e+06): the API server refuses them for integers. */
export function exponentNumbers(text: string): string[] {
  return text.split('\n').filter((l) => /:\s*-?\d+(\.\d+)?e[+-]?\d+\s*$/.test(l) && !/^\s*#/.test(l));
}

/**
 * The agent's capabilities as docs/security.md's table under "### The agent"
 * lists them (the rows "| `CAP_X` | …" of the table whose header starts
 * "| capability |"), without the CAP_ prefix, in order.
 */
export function documentedAgentCapabilities(securityMd: string): string[] {
  const section = securityMd.split(/^### The agent$/m)[1]?.split(/^#{2,3} /m)[0] ?? '';
  const lines = section.split('\n');
  const start = lines.findIndex((l) => /^\| capability \|/.test(l));
  if (start < 0) throw new Error('docs/security.md: no "| capability |" table under "### The agent"');
  const out: string[] = [];
  for (const l of lines.slice(start + 2)) {
    if (!l.startsWith('|')) break;
    const m = /^\| `CAP_([A-Z_]+)` \|/.exec(l);
    if (!m) throw new Error(`docs/security.md: a row of the agent's capability table that names no capability: ${l.slice(0, 80)}`);
    out.push(m[1]!);
  }
  return out;
}

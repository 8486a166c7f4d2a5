/**
 * A single-node Kubernetes cluster from upstream sources, for the e2e tests
 * and for trying podtap for real (scripts/cluster.sh is the entry point).
 *
 * The whole node lives in one network namespace, `podtap-node`, entered with
 * nsenter --net (the mount namespace stays the host's, so /sys/fs/bpf and the
 * cgroups are the host's, as on a real node): etcd, the API server, the
 * kubelet, containerd, kube-proxy, every hostNetwork pod. Its "uplink" is a
 * veth whose peer stays in the same namespace with no address, so nothing can
 * leave through the machine's interfaces; kube-proxy's and the CNI plugins'
 * iptables rules, the pods' veths and the bridge die with the namespace.
 * Every process is placed in the cgroup /podtap-cluster (the kubelet's pods
 * below it), so `down` finds all of them; every file is under the state
 * directory, except what the programs insist on (recorded and removed).
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, rmdir, writeFile, readlink, lstat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import { apiserverArgs, controllerManagerArgs, etcdArgs, makeControlPlanePki, schedulerArgs, type ControlPlaneAddresses } from './controlplane.ts';
import { alive, inNetns, sleep, startDaemon, stopPid, tail, waitFor } from './daemon.ts';
import { kubeconfig } from './pki.ts';
import { sessionIdForPolicy } from '../../src/agent/agent.ts';
import { PIN_ROOT } from '../../src/datapath/session.ts';
import { NODE_BUDGET_PIN } from '../../src/datapath/node-budget.ts';

export const ROOT = new URL('../../', import.meta.url).pathname.replace(/\/$/, '');

/** Every name and address of the cluster, declared once. */
export const CLUSTER = {
  netns: 'podtap-node',
  nodeName: 'podtap-node',
  uplink: 'node0',
  uplinkPeer: 'node0-peer',
  nodeIPv4: '198.18.0.1',
  nodeIPv6: '2001:db8::1',
  podCidrs: '198.18.64.0/18,2001:db8:64::/56',
  serviceCidrs: '198.19.0.0/24,2001:db8:96::/112',
  kubernetesServiceIps: ['198.19.0.1', '2001:db8:96::1'],
  apiPort: 6443,
  cgroup: 'podtap-cluster',
  bridge: 'cni0',
} as const;

export const LAYOUTS = ['bridge', 'ptp'] as const;
export type Layout = (typeof LAYOUTS)[number];

export const STATE = process.env.PODTAP_CLUSTER_STATE ?? '/var/lib/podtap/cluster';
export const NETNS_PATH = `/run/netns/${CLUSTER.netns}`;

/** Programs that write outside the state directory whatever they are told: removed by `down`. */
const OUTSIDE = [
  '/var/log/containers', // the kubelet's symlinks to container logs (a constant in the kubelet)
  '/run/containerd', // containerd 1.6's shims put their sockets in /run/containerd/s (a constant)
  '/var/lib/cni', // libcni's result cache
] as const;

/** Kernel settings the kubelet changes on the host (it refuses to start otherwise): restored by `down`. */
const KUBELET_SYSCTLS = ['vm/overcommit_memory', 'vm/panic_on_oom', 'kernel/panic', 'kernel/panic_on_oops', 'kernel/keys/root_maxkeys', 'kernel/keys/root_maxbytes'];

const DAEMONS = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'containerd', 'kubelet', 'kube-proxy'] as const;
type DaemonName = (typeof DAEMONS)[number];

export interface ClusterRecord {
  layout: Layout;
  bin: string;
  startedAt: string;
  pids: Partial<Record<DaemonName, number>>;
  /** Paths of OUTSIDE that did not exist before `up`. */
  created: string[];
  sysctls: Record<string, string>;
  hostIptables: string;
  /** Propagation of the mounts under /sys before `up` ("private" when all are). */
  sysPropagation?: string;
  /** Whether `up` found the agents' pin root (/sys/fs/bpf/podtap) absent. */
  pinRootCreated?: boolean;
  /** Set by `down`: the agent sessions of this cluster's policies (pin directories under the pin root). */
  sessions?: string[];
}

export const paths = {
  record: join(STATE, 'cluster.json'),
  pki: join(STATE, 'pki'),
  etc: join(STATE, 'etc'),
  log: join(STATE, 'log'),
  run: join(STATE, 'run'),
  etcd: join(STATE, 'etcd'),
  containerdRoot: join(STATE, 'containerd', 'root'),
  containerdState: join(STATE, 'containerd', 'state'),
  containerdSock: join(STATE, 'run', 'containerd.sock'),
  kubelet: join(STATE, 'kubelet'),
  cniConf: join(STATE, 'cni', 'net.d'),
  cniIpam: join(STATE, 'cni', 'ipam'),
  runc: join(STATE, 'run', 'runc'),
  adminKubeconfig: join(STATE, 'etc', 'admin.kubeconfig'),
};

export const log = (msg: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} cluster: ${msg}\n`);

// ---------------------------------------------------------------- cgroups

/** The v1 hierarchies (or the v2 root) where /podtap-cluster lives. */
async function cgroupRoots(): Promise<string[]> {
  const mounts = await readFile('/proc/self/mountinfo', 'utf8');
  const roots: string[] = [];
  for (const line of mounts.split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!pre || !post) continue;
    const mountPoint = pre.split(' ')[4]!;
    const fstype = post.split(' ')[0];
    // every v1 hierarchy (the kubelet wants its cgroup root in the named
    // systemd one too) and the unified one, alone at /sys/fs/cgroup or beside
    // them (hybrid: runc puts every container there as well)
    if (fstype === 'cgroup' || fstype === 'cgroup2') roots.push(mountPoint);
  }
  return roots;
}

/** Where a process writes itself to be tracked: the pids hierarchy (v1) or the unified one. */
async function trackingProcs(): Promise<string> {
  const roots = await cgroupRoots();
  const r = roots.find((x) => x.endsWith('/pids')) ?? roots.find((x) => x === '/sys/fs/cgroup');
  if (!r) throw new Error('no pids cgroup hierarchy (v1) nor a unified one at /sys/fs/cgroup');
  return join(r, CLUSTER.cgroup, 'node', 'cgroup.procs');
}

async function makeCgroups(): Promise<void> {
  for (const r of await cgroupRoots()) await mkdir(join(r, CLUSTER.cgroup), { recursive: true });
  await mkdir(join((await trackingProcs()).replace(/\/cgroup\.procs$/, '')), { recursive: true });
}

/** Every pid in /podtap-cluster, in any hierarchy. */
async function cgroupPids(): Promise<number[]> {
  const pids = new Set<number>();
  const walk = async (dir: string) => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.isDirectory()) await walk(join(dir, e.name));
      else if (e.name === 'cgroup.procs') {
        for (const p of (await readFile(join(dir, e.name), 'utf8').catch(() => '')).split('\n')) if (p) pids.add(Number(p));
      }
    }
  };
  for (const r of await cgroupRoots()) await walk(join(r, CLUSTER.cgroup));
  return [...pids];
}

async function removeCgroups(): Promise<string[]> {
  const left: string[] = [];
  const rmTree = async (dir: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) if (e.isDirectory()) await rmTree(join(dir, e.name));
    for (let i = 0; i < 20; i++) {
      try {
        await rmdir(dir);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        await sleep(100);
      }
    }
    left.push(dir);
  };
  for (const r of await cgroupRoots()) await rmTree(join(r, CLUSTER.cgroup));
  return left;
}

// ---------------------------------------------------------------- network namespace

async function ip(args: string[]): Promise<void> {
  await execa('ip', args);
}

async function sysctlIn(key: string, value: string): Promise<void> {
  await inNetns(NETNS_PATH, 'sysctl', ['-qw', `${key}=${value}`]);
}

async function makeNetns(): Promise<void> {
  await ip(['netns', 'add', CLUSTER.netns]);
  const n = ['-n', CLUSTER.netns];
  await ip([...n, 'link', 'set', 'lo', 'up']);
  // The node's uplink: a veth whose peer stays here, without an address. The
  // node IP and the default routes sit on it (the kubelet, kube-proxy and the
  // hostNetwork pods expect a node interface and routes), but what is routed
  // out goes nowhere: nothing answers neighbour discovery behind it.
  await ip([...n, 'link', 'add', CLUSTER.uplink, 'type', 'veth', 'peer', 'name', CLUSTER.uplinkPeer]);
  await sysctlIn(`net.ipv6.conf.${CLUSTER.uplinkPeer.replace(/\./g, '/')}.disable_ipv6`, '1');
  await ip([...n, 'addr', 'add', `${CLUSTER.nodeIPv4}/24`, 'dev', CLUSTER.uplink]);
  await ip([...n, '-6', 'addr', 'add', `${CLUSTER.nodeIPv6}/64`, 'dev', CLUSTER.uplink, 'nodad']);
  await ip([...n, 'link', 'set', CLUSTER.uplinkPeer, 'up']);
  await ip([...n, 'link', 'set', CLUSTER.uplink, 'up']);
  await ip([...n, 'route', 'add', 'default', 'dev', CLUSTER.uplink]);
  await ip([...n, '-6', 'route', 'add', 'default', 'dev', CLUSTER.uplink]);
  await sysctlIn('net.ipv4.ip_forward', '1');
  await sysctlIn('net.ipv6.conf.all.forwarding', '1');
  // Bridged pod traffic passes iptables, so Services work between pods of the
  // same bridge (kube-proxy's DNAT; the reply is un-NATed on the bridge).
  await sysctlIn('net.bridge.bridge-nf-call-iptables', '1').catch(() => undefined);
  await sysctlIn('net.bridge.bridge-nf-call-ip6tables', '1').catch(() => undefined);
}

// ---------------------------------------------------------------- bpffs

/**
 * The agent mounts the host's /sys/fs/bpf with HostToContainer propagation,
 * which containerd allows only from a shared (or slave) mount: what systemd
 * makes every mount on a real node. A machine without systemd has them
 * private, and bpffs may be mounted there several times over (containerd
 * judges the lowest, which no path reaches): for the cluster's lifetime the
 * whole /sys tree is made shared, and `down` makes it private again — only
 * when every mount under /sys was private, so that is exactly what it was.
 */
async function sysPropagation(): Promise<string> {
  const r = await execa('findmnt', ['-R', '-n', '-o', 'PROPAGATION', '/sys'], { reject: false });
  const all = new Set(r.stdout.split('\n').map((l) => l.trim()).filter(Boolean));
  return all.size === 1 ? [...all][0]! : [...all].sort().join(',');
}

// ---------------------------------------------------------------- configuration files

function cniConfig(layout: Layout, podCidrs: string[]): string {
  const ipam = {
    type: 'host-local',
    dataDir: paths.cniIpam,
    ranges: podCidrs.map((subnet) => [{ subnet }]),
    routes: podCidrs.map((c) => ({ dst: c.includes(':') ? '::/0' : '0.0.0.0/0' })),
  };
  const plugin =
    layout === 'bridge'
      ? // flannel's and kindnet-with-bridge's layout: every pod's veth is a port of cni0, which holds the gateway address
        { type: 'bridge', bridge: CLUSTER.bridge, isGateway: true, ipMasq: false, hairpinMode: true, mtu: 1500, ipam }
      : // Calico's: one routed point-to-point veth per pod, a /32 (/128) route to it on the node
        { type: 'ptp', ipMasq: false, mtu: 1500, ipam };
  return JSON.stringify({ cniVersion: '1.0.0', name: 'podtap', plugins: [plugin] }, null, 2);
}

function containerdConfig(sandboxImage: string): string {
  return `version = 2
root = "${paths.containerdRoot}"
state = "${paths.containerdState}"
[grpc]
  address = "${paths.containerdSock}"
[ttrpc]
  address = "${paths.containerdSock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "${join(STATE, 'containerd', 'opt')}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${sandboxImage}"
  # Pod network namespaces under the state directory, not /run/netns.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  enable_selinux = false
  disable_apparmor = true
  # The kubelet asks -998 for sandboxes (and lower scores for guaranteed pods):
  # a score below containerd's own needs CAP_SYS_RESOURCE, which a machine
  # (or a container) running this cluster may not grant; clamp instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${paths.cniConf}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "${paths.runc}"
`;
}

function kubeletConfig(): string {
  const p = join(paths.pki);
  return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "${p}/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: "${p}/kubelet-server.crt"
tlsPrivateKeyFile: "${p}/kubelet-server.key"
containerRuntimeEndpoint: "unix://${paths.containerdSock}"
cgroupDriver: cgroupfs
cgroupRoot: /${CLUSTER.cgroup}
address: ${CLUSTER.nodeIPv4}
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
# No cluster DNS, and not the machine's resolvers either: pods resolve nothing.
resolvConf: ""
podLogsDir: "${join(paths.log, 'pods')}"
volumePluginDir: "${join(paths.kubelet, 'volume-plugins')}"
failSwapOn: false
# The images are imported, never pulled (no registry is reachable): never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
serializeImagePulls: false
`;
}

function kubeProxyConfig(kubeconfig: string): string {
  return `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "${kubeconfig}"}
hostnameOverride: ${CLUSTER.nodeName}
mode: iptables
detectLocalMode: NodeCIDR
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Leave the global conntrack table size and timeouts alone (only the host namespace may set them).
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
`;
}

// ---------------------------------------------------------------- helpers

export function readRecord(): ClusterRecord | undefined {
  return existsSync(paths.record) ? (JSON.parse(readFileSync(paths.record, 'utf8')) as ClusterRecord) : undefined;
}

async function saveRecord(r: ClusterRecord): Promise<void> {
  await writeFile(paths.record, JSON.stringify(r, null, 2));
}

/** kubectl as the admin, inside the node's namespace. */
export async function kubectl(bin: string, args: string[], opts: { input?: string; reject?: boolean } = {}) {
  return inNetns(NETNS_PATH, join(bin, 'kubectl'), [`--kubeconfig=${paths.adminKubeconfig}`, ...args], opts);
}

async function hostIptables(): Promise<string> {
  const v4 = await execa('iptables-save', [], { reject: false });
  const v6 = await execa('ip6tables-save', [], { reject: false });
  // counters and comments with dates change on their own
  return `${v4.stdout}\n${v6.stdout}`.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.replace(/\[\d+:\d+\]/g, '')).join('\n');
}

// ---------------------------------------------------------------- up

export interface UpOptions {
  layout: Layout;
  bin: string;
  sandboxImage: string;
  /** Image archives (OCI or docker-archive tars) to import into containerd's k8s.io namespace. */
  images: string[];
}

export async function up(o: UpOptions): Promise<void> {
  if (readRecord()) throw new Error(`a cluster is already up (${paths.record}): run scripts/cluster.sh down first`);
  if (existsSync(NETNS_PATH)) throw new Error(`the network namespace ${CLUSTER.netns} exists without a cluster record: run scripts/cluster.sh down to clean up`);
  const started = Date.now();
  for (const d of [paths.pki, paths.etc, paths.log, paths.run, paths.cniConf, paths.cniIpam, paths.kubelet]) await mkdir(d, { recursive: true });
  const record: ClusterRecord = {
    layout: o.layout,
    bin: o.bin,
    startedAt: new Date().toISOString(),
    pids: {},
    created: [...OUTSIDE, dirname(STATE)].filter((p) => !existsSync(p)),
    sysctls: Object.fromEntries(KUBELET_SYSCTLS.map((k) => [k, readFileSync(`/proc/sys/${k}`, 'utf8').trim()])),
    hostIptables: await hostIptables(),
    sysPropagation: await sysPropagation(),
    pinRootCreated: !existsSync(PIN_ROOT),
  };
  await saveRecord(record);
  if (record.sysPropagation === 'private') await execa('mount', ['--make-rshared', '/sys']);
  else if (record.sysPropagation !== 'shared') {
    throw new Error(`the mounts under /sys are ${record.sysPropagation}: the agent's /sys/fs/bpf mount needs them shared (as systemd makes them), and cluster.sh changes them only when all are private`);
  }

  log(`network namespace ${CLUSTER.netns}: node ${CLUSTER.nodeIPv4}, ${CLUSTER.nodeIPv6}; pods ${CLUSTER.podCidrs}; services ${CLUSTER.serviceCidrs}`);
  await makeNetns();
  await makeCgroups();
  const procs = await trackingProcs();

  const addrs: ControlPlaneAddresses = {
    advertise: CLUSTER.nodeIPv4,
    bind: '0.0.0.0',
    apiPort: CLUSTER.apiPort,
    etcdClientPort: 2379,
    etcdPeerPort: 2380,
    serviceCidrs: CLUSTER.serviceCidrs,
    kubernetesServiceIps: [...CLUSTER.kubernetesServiceIps],
    extraIps: [CLUSTER.nodeIPv6],
  };
  log('certificates (openssl)');
  const files = await makeControlPlanePki(paths.pki, addrs, { name: CLUSTER.nodeName, ips: [CLUSTER.nodeIPv4, CLUSTER.nodeIPv6] });
  const server = `https://${CLUSTER.nodeIPv4}:${CLUSTER.apiPort}`;
  const kc = (n: string, user: string) => kubeconfig(server, files.pki.caCert, user, { cert: files.pki.cert(n), key: files.pki.key(n) });
  const kubeconfigs: Record<string, string> = {
    admin: kc('admin', 'kubernetes-admin'),
    'controller-manager': kc('controller-manager', 'system:kube-controller-manager'),
    scheduler: kc('scheduler', 'system:kube-scheduler'),
    kubelet: kc('kubelet-client', `system:node:${CLUSTER.nodeName}`),
    'kube-proxy': kc('kube-proxy', 'system:kube-proxy'),
  };
  for (const [n, c] of Object.entries(kubeconfigs)) await writeFile(join(paths.etc, `${n}.kubeconfig`), c, { mode: 0o600 });

  const start = async (name: DaemonName, args: string[], cmd = join(o.bin, name)) => {
    const logFile = join(paths.log, `${name}.log`);
    const pid = startDaemon({ name, cmd, args, logFile, netns: NETNS_PATH, cgroupProcs: procs, detached: true });
    record.pids[name] = pid;
    await saveRecord(record);
    return { pid, logFile };
  };

  log('etcd, kube-apiserver');
  await start('etcd', etcdArgs(files, addrs, paths.etcd));
  const api = await start('kube-apiserver', apiserverArgs(files, addrs));
  await waitFor('kube-apiserver /readyz', async () => ((await kubectl(o.bin, ['get', '--raw=/readyz'], { reject: false })).exitCode === 0 ? true : undefined), {
    timeoutMs: 120_000,
    logFile: api.logFile,
    pid: api.pid,
  });
  log(`kube-apiserver ready (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  await start('kube-controller-manager', controllerManagerArgs(files, join(paths.etc, 'controller-manager.kubeconfig'), CLUSTER.podCidrs, CLUSTER.serviceCidrs));
  await start('kube-scheduler', schedulerArgs(join(paths.etc, 'scheduler.kubeconfig')));

  log('containerd');
  await writeFile(join(paths.etc, 'containerd.toml'), containerdConfig(o.sandboxImage));
  const ctd = await start('containerd', ['--config', join(paths.etc, 'containerd.toml')], 'containerd');
  await waitFor('containerd socket', async () => (existsSync(paths.containerdSock) ? true : undefined), { timeoutMs: 30_000, logFile: ctd.logFile, pid: ctd.pid });
  for (const image of o.images) {
    log(`import ${image}`);
    await execa('ctr', ['--address', paths.containerdSock, '-n', 'k8s.io', 'images', 'import', '--no-unpack', image]);
  }

  log('kubelet');
  await writeFile(join(paths.etc, 'kubelet.yaml'), kubeletConfig());
  const kubelet = await start('kubelet', [
    `--config=${join(paths.etc, 'kubelet.yaml')}`,
    `--kubeconfig=${join(paths.etc, 'kubelet.kubeconfig')}`,
    `--root-dir=${paths.kubelet}`,
    `--cert-dir=${join(paths.kubelet, 'pki')}`,
    `--hostname-override=${CLUSTER.nodeName}`,
    `--node-ip=${CLUSTER.nodeIPv4},${CLUSTER.nodeIPv6}`,
    '--v=1',
  ]);
  const podCidrs = await waitFor(
    'the node registered with its pod ranges (node.spec.podCIDRs)',
    async () => {
      const r = await kubectl(o.bin, ['get', 'node', CLUSTER.nodeName, '-o', 'jsonpath={.spec.podCIDRs}'], { reject: false });
      const cidrs = r.exitCode === 0 && r.stdout ? (JSON.parse(r.stdout) as string[]) : [];
      return cidrs.length === CLUSTER.podCidrs.split(',').length ? cidrs : undefined;
    },
    { timeoutMs: 120_000, logFile: kubelet.logFile, pid: kubelet.pid },
  );
  log(`CNI: ${o.layout} layout over ${podCidrs.join(', ')}`);
  await writeFile(join(paths.cniConf, '10-podtap.conflist'), cniConfig(o.layout, podCidrs));

  log('kube-proxy');
  await writeFile(join(paths.etc, 'kube-proxy.yaml'), kubeProxyConfig(join(paths.etc, 'kube-proxy.kubeconfig')));
  await start('kube-proxy', [`--config=${join(paths.etc, 'kube-proxy.yaml')}`]);

  await waitFor(
    'node Ready',
    async () => {
      const r = await kubectl(o.bin, ['get', 'node', CLUSTER.nodeName, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'], { reject: false });
      return r.stdout === 'True' ? true : undefined;
    },
    { timeoutMs: 120_000, logFile: kubelet.logFile, pid: kubelet.pid },
  );
  log(`up: node ${CLUSTER.nodeName} Ready, ${o.layout} layout, in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

// ---------------------------------------------------------------- layout

/**
 * Switch the pod network layout of a running cluster: the next pods are
 * wired the new way (containerd reloads the CNI configuration when it
 * changes). Refused while a pod on the pod network exists — it would keep
 * the old wiring, and a bridge cannot go while ports are on it. Costs
 * seconds, where down + up costs a minute and the image imports again.
 */
export async function relayout(layout: Layout): Promise<void> {
  const record = readRecord();
  if (!record) throw new Error('no cluster is up: scripts/cluster.sh up');
  if (record.layout === layout) return;
  const pods = await kubectl(record.bin, ['get', 'pods', '-A', '-o', 'jsonpath={range .items[?(@.spec.hostNetwork!=true)]}{.metadata.namespace}/{.metadata.name} {end}']);
  if (pods.stdout.trim()) throw new Error(`pods on the pod network still exist (${pods.stdout.trim()}): delete them first, they would keep the ${record.layout} wiring`);
  const cidrs = JSON.parse((await kubectl(record.bin, ['get', 'node', CLUSTER.nodeName, '-o', 'jsonpath={.spec.podCIDRs}'])).stdout) as string[];
  await writeFile(join(paths.cniConf, '10-podtap.conflist'), cniConfig(layout, cidrs));
  if (record.layout === 'bridge') await execa('ip', ['-n', CLUSTER.netns, 'link', 'del', CLUSTER.bridge], { reject: false });
  record.layout = layout;
  await saveRecord(record);
  log(`layout: ${layout}; the next pods are wired by the ${layout} plugin`);
}

// ---------------------------------------------------------------- down

/** Mount points under @dir, deepest first. */
async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  const points = info
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => !!m && (m === dir || m.startsWith(`${dir}/`)))
    .map((m) => m.replace(/\\040/g, ' '));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

async function unmountAll(dir: string): Promise<void> {
  for (let round = 0; round < 5; round++) {
    const points = await mountsUnder(dir);
    if (!points.length) return;
    for (const m of points) await execa('umount', [m], { reject: false }).then((r) => (r.exitCode !== 0 ? execa('umount', ['-l', m], { reject: false }) : r));
  }
}

async function killCgroup(): Promise<void> {
  for (let round = 0; round < 50; round++) {
    const pids = await cgroupPids();
    if (!pids.length) return;
    for (const p of pids) {
      try {
        process.kill(p, round < 2 ? 'SIGTERM' : 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await sleep(round < 2 ? 1000 : 200);
  }
}

/** Remove what the programs left outside the state directory (only what `up` found absent). */
async function removeOutside(created: string[]): Promise<void> {
  // the state directory's parent, made by up: only if nothing else is in it
  for (const p of created) await (p === dirname(STATE) ? rmdir(p).catch(() => undefined) : rm(p, { recursive: true, force: true }));
  // Kept directories: only our entries. The kubelet's links point into our state directory.
  if (!created.includes('/var/log/containers') && existsSync('/var/log/containers')) {
    for (const e of await readdir('/var/log/containers')) {
      const f = join('/var/log/containers', e);
      const target = (await lstat(f)).isSymbolicLink() ? await readlink(f) : '';
      if (target.startsWith(STATE)) await rm(f, { force: true });
    }
  }
}

/**
 * The agent's sessions of this cluster's policies. Their pins are in the
 * host's bpffs, which the whole machine shares (a node's pins outlive its
 * pods by design, so an upgrade keeps capturing): a cluster torn down without
 * `helm uninstall` would leave them, and the next cluster's agent would find
 * sessions whose interfaces are gone. Asked of the API server while it runs;
 * only these are removed, never another podtap's on the machine.
 */
async function clusterSessions(record: ClusterRecord): Promise<string[]> {
  const r = await kubectl(record.bin, ['--request-timeout=10s', 'get', 'sniffpolicies', '-A', '-o', 'jsonpath={.items[*].metadata.uid}'], { reject: false });
  return r.exitCode === 0 ? r.stdout.split(/\s+/).filter(Boolean).map(sessionIdForPolicy) : [];
}

/** Whether the pin root holds the node's mirror budget and nothing else: no session shares it any more. */
async function onlyNodeBudget(): Promise<boolean> {
  const names = await readdir(PIN_ROOT).catch(() => [] as string[]);
  return names.length === 1 && names[0] === NODE_BUDGET_PIN;
}

async function removeSessions(record: ClusterRecord): Promise<void> {
  for (const id of record.sessions ?? []) await rm(join(PIN_ROOT, id), { recursive: true, force: true });
  // the node's mirror budget, which the agents pinned beside their sessions,
  // once no session is left to share it (the agents' own cleanup does the same)
  if ((record.sessions ?? []).length && (await onlyNodeBudget())) await rm(join(PIN_ROOT, NODE_BUDGET_PIN), { force: true });
  // the pin root itself when up made it and nothing else is in it now (the agent's uninstall hook does the same)
  if (record.pinRootCreated) await rmdir(PIN_ROOT).catch(() => undefined);
}

export async function down(): Promise<void> {
  const started = Date.now();
  const record = readRecord();
  if (record && existsSync(NETNS_PATH)) record.sessions = await clusterSessions(record);
  // the control plane first, gently: the kubelet and containerd would restart pods
  for (const name of ['kube-proxy', 'kubelet', 'kube-scheduler', 'kube-controller-manager', 'kube-apiserver', 'etcd'] as const) {
    const pid = record?.pids[name];
    if (pid && alive(pid)) await stopPid(pid, 5_000);
  }
  // containerd and every pod: whatever is in the cluster's cgroups
  await killCgroup();
  await unmountAll(STATE);
  const cg = await removeCgroups();
  if (cg.length) log(`warning: cgroups still busy: ${cg.join(', ')}`);
  if (existsSync(NETNS_PATH)) await execa('ip', ['netns', 'del', CLUSTER.netns], { reject: false });
  await rm(STATE, { recursive: true, force: true });
  if (record) {
    await removeOutside(record.created);
    for (const [k, v] of Object.entries(record.sysctls)) await writeFile(`/proc/sys/${k}`, v).catch(() => undefined);
    if (record.sysPropagation === 'private') await execa('mount', ['--make-rprivate', '/sys'], { reject: false });
    await removeSessions(record);
  }
  log(`down in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const left = await leftovers(record);
  if (left.length) throw new Error(`down left things behind:\n  ${left.join('\n  ')}`);
}

/** What a cluster leaves on the machine; empty when it is gone. `down` and the tests check it. */
export async function leftovers(record?: ClusterRecord): Promise<string[]> {
  const left: string[] = [];
  const pids = await cgroupPids();
  if (pids.length) left.push(`processes in the cgroup /${CLUSTER.cgroup}: ${pids.join(' ')}`);
  const procs = await execa('ps', ['-eo', 'pid=,args='], { reject: false });
  for (const line of procs.stdout.split('\n')) {
    if (/(kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy|containerd|etcd) /.test(line) && line.includes(STATE)) left.push(`process: ${line.trim()}`);
  }
  for (const m of await mountsUnder(STATE)) left.push(`mount: ${m}`);
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  for (const l of mountinfo.split('\n')) if (/ nsfs /.test(l) && l.includes(STATE)) left.push(`netns mount: ${l.split(' ')[4]}`);
  if (existsSync(NETNS_PATH)) left.push(`network namespace ${CLUSTER.netns}`);
  for (const r of await cgroupRoots()) if (existsSync(join(r, CLUSTER.cgroup))) left.push(`cgroup ${join(r, CLUSTER.cgroup)}`);
  const links = await execa('ip', ['-j', 'link', 'show'], { reject: false });
  for (const l of JSON.parse(links.stdout || '[]') as { ifname: string }[]) {
    if ([CLUSTER.uplink, CLUSTER.uplinkPeer, CLUSTER.bridge].includes(l.ifname as never)) left.push(`host interface ${l.ifname}`);
  }
  if (existsSync(STATE)) left.push(`state directory ${STATE}`);
  if (record) {
    for (const p of record.created) if (existsSync(p)) left.push(`file outside the state directory: ${p}`);
    for (const [k, v] of Object.entries(record.sysctls)) {
      const now = readFileSync(`/proc/sys/${k}`, 'utf8').trim();
      if (now !== v) left.push(`sysctl ${k} = ${now} (was ${v})`);
    }
    const prop = await sysPropagation();
    if (record.sysPropagation && prop !== record.sysPropagation) left.push(`the mounts under /sys are ${prop} (were ${record.sysPropagation})`);
    for (const id of record.sessions ?? []) if (existsSync(join(PIN_ROOT, id))) left.push(`pins of an agent session of this cluster: ${join(PIN_ROOT, id)}`);
    if ((record.sessions ?? []).length && (await onlyNodeBudget())) left.push(`the node's mirror budget ${join(PIN_ROOT, NODE_BUDGET_PIN)}, with no session left to share it`);
    if (record.pinRootCreated && existsSync(PIN_ROOT) && !(await readdir(PIN_ROOT)).length) left.push(`the empty pin root ${PIN_ROOT}`);
    const ipt = await hostIptables();
    if (ipt !== record.hostIptables) left.push(`the host's iptables rules changed:\n${ipt}`);
  }
  return left;
}

// ---------------------------------------------------------------- status

export async function status(): Promise<string> {
  const r = readRecord();
  if (!r) return existsSync(NETNS_PATH) ? `no cluster record, but ${CLUSTER.netns} exists: run down` : 'down';
  const lines = [`up since ${r.startedAt}, layout ${r.layout}, state ${STATE}`];
  for (const d of DAEMONS) {
    const pid = r.pids[d];
    lines.push(`  ${d.padEnd(24)} ${pid ? (alive(pid) ? `running (pid ${pid})` : `DEAD (pid ${pid}; log: ${join(paths.log, `${d}.log`)})`) : 'not started'}`);
  }
  const nodes = await kubectl(r.bin, ['get', 'nodes', '-o', 'wide'], { reject: false });
  lines.push(nodes.exitCode === 0 ? nodes.stdout : `kubectl: ${nodes.all}`);
  return lines.join('\n');
}

export { tail };

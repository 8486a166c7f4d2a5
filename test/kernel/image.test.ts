/**
 * The container image, without Docker: the Dockerfile's steps run in a
 * Debian 12 root made with debootstrap (test/unit/packaging/lib/image-rootfs.ts,
 * layers cached under /var/tmp/podtap-image), and the result runs as the
 * chart runs it — the image's user and environment, a read-only root
 * filesystem, emptyDirs and hostPaths as bind mounts, /proc/sys read-only as
 * container runtimes mount it, and the agent's capability set (setpriv) — to
 * show that `podtap --version` works, that the agent's data plane compiles,
 * loads and attaches from the image, and that each capability the chart
 * grants the agent is needed.
 *
 * Building the rootfs needs the network (debootstrap, apt-get, npm ci) and the
 * suite runs without one: scripts/setup.sh builds it first. Here only steps
 * that work offline may still run (the TypeScript build after a source change).
 */
import { existsSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { leftovers } from '../../src/datapath/cleanup.ts';
import { createRunner } from '../../src/datapath/exec.ts';
import { readFrames, waitForLine } from '../helpers/capture.ts';
import { policyYaml, startCollector } from '../helpers/harness.ts';
import { createTopology, NODE_BIN, type Topology } from '../helpers/netns.ts';
import { buildImage, CACHE, overlayMount, sq, type BuildResult } from '../unit/packaging/lib/image-rootfs.ts';
import { render } from '../unit/packaging/lib/render.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
type AgentSpec = { containers: { name: string; env?: { name: string; value?: string }[]; securityContext: { capabilities: { add: string[] } } }[] };
const agentSpec = ((await render()).objects.find((o) => o.kind === 'DaemonSet')!.spec as { template: { spec: AgentSpec } }).template.spec.containers.find((c) => c.name === 'agent')!;
/** What the chart's agent container adds (charts/podtap/templates/agent.yaml), as setpriv names them. */
const AGENT_CAPS = agentSpec.securityContext.capabilities.add.map((c) => c.toLowerCase());
/** Where the chart mounts the host's /sys/fs/bpf/podtap in the agent (PODTAP_PIN_ROOT). */
const AGENT_PIN_ROOT = agentSpec.env!.find((e) => e.name === 'PODTAP_PIN_ROOT')!.value!;
/** Where the cgroups of this file's "pods" go (a pids cgroup on v1, the unified hierarchy on v2). */
const CGROUP_BASE = existsSync('/sys/fs/cgroup/pids') ? '/sys/fs/cgroup/pids' : '/sys/fs/cgroup';

let image: BuildResult;
let work: string;
let buildSeconds = 0;

beforeAll(async () => {
  const started = Date.now();
  try {
    image = await buildImage();
  } catch (err) {
    throw new Error(
      `could not build the image rootfs in ${CACHE}: ${(err as Error).message.slice(0, 2000)}\n` +
        'The steps that download (debootstrap, apt-get, npm ci) need the network, which the test suite does not have: ' +
        'run scripts/setup.sh first (it builds the rootfs: node test/unit/packaging/lib/image-rootfs.ts), then the test again.',
      { cause: err },
    );
  }
  buildSeconds = (Date.now() - started) / 1000;
  work = await mkdtemp(join(tmpdir(), 'podtap-image-'));
  await chmod(work, 0o755);
}, 600_000);

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

interface RunOptions {
  /** Network namespace to run in (default: the suite's). */
  netns?: string;
  /** uid:gid, or "root" with the capabilities in `caps`. */
  user?: string;
  caps?: string[];
  /** Extra bind mounts: host path -> path in the image (read-only unless rw). */
  binds?: { host: string; path: string; rw?: boolean }[];
  cwd?: string;
  /** Extra environment, as a pod spec's env adds to the image's. */
  env?: Record<string, string>;
}

/**
 * Run argv in the image as a container runtime would: the image's layers as a
 * read-only root, tmpfs /tmp and /run, the image's environment.
 */
function inImage(argv: string[], opts: RunOptions = {}): ResultPromise<{ reject: false; all: true }> {
  const m = join(work, `root-${Math.random().toString(36).slice(2, 8)}`);
  const cfg = image.image.config;
  const env = Object.entries({ ...cfg.env, HOME: '/nonexistent', ...opts.env }).map(([k, v]) => sq(`${k}=${v}`)).join(' ');
  // Like runc: the image's layers under a throwaway upper layer, mount points
  // for the volumes created, then the root made read-only.
  const lines = [
    `mkdir -p ${sq(m)} ${sq(`${m}.rw`)}`,
    `mount -t tmpfs tmpfs ${sq(`${m}.rw`)} && mkdir ${sq(`${m}.rw/upper`)} ${sq(`${m}.rw/work`)}`,
    overlayMount(image.image.layers, m, { diff: `${m}.rw/upper`, work: `${m}.rw/work` }),
    `mount -t proc proc ${sq(`${m}/proc`)}`,
    // container runtimes mount /proc/sys and /sys read-only for unprivileged containers
    `mount --bind ${sq(`${m}/proc/sys`)} ${sq(`${m}/proc/sys`)} && mount -o remount,bind,ro ${sq(`${m}/proc/sys`)}`,
    `mount -t sysfs -o ro sysfs ${sq(`${m}/sys`)}`,
    `mount --rbind /dev ${sq(`${m}/dev`)}`,
    `mount -t tmpfs tmpfs ${sq(`${m}/tmp`)}`,
    `mount -t tmpfs tmpfs ${sq(`${m}/run`)} && mkdir -p ${sq(`${m}/run/podtap`)} ${sq(`${m}/run/netns`)}`,
  ];
  for (const b of opts.binds ?? []) {
    // recursive, as runtimes bind volumes (/run/netns holds one mount per namespace)
    lines.push(`mkdir -p ${sq(m + b.path)}`, `mount --rbind ${sq(b.host)} ${sq(m + b.path)}`);
    if (!b.rw) lines.push(`mount -o remount,bind,ro ${sq(m + b.path)}`);
  }
  lines.push(`mount -o remount,bind,ro ${sq(m)}`);
  let priv = '';
  if (opts.caps) {
    const set = opts.caps.length ? `-all,${opts.caps.map((c) => `+${c}`).join(',')}` : '-all';
    // allowPrivilegeEscalation: false (the chart's), except beside SYS_ADMIN (Kubernetes refuses that pair)
    const nnp = opts.caps.includes('sys_admin') ? '' : '--no-new-privs ';
    priv = `/usr/bin/setpriv ${nnp}--bounding-set ${set} --inh-caps -all -- `;
  }
  const userspec = opts.user && opts.user !== 'root' ? `--userspec=${sq(opts.user)} ` : '';
  const inner = `cd ${sq(opts.cwd ?? cfg.workdir)} && exec ${priv}/usr/bin/env -i ${env} ${argv.map(sq).join(' ')}`;
  lines.push(`exec chroot ${userspec}${sq(m)} /bin/sh -c ${sq(inner)}`);
  const script = lines.join('\n');
  const unshare = ['unshare', '--mount', '--propagation', 'private', 'sh', '-euc', script];
  const cmd = opts.netns ? ['nsenter', `--net=/run/netns/${opts.netns}`, ...unshare] : unshare;
  return execa(cmd[0]!, cmd.slice(1), { reject: false, all: true });
}

async function pcapngFiles(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).filter((f) => f.endsWith('.pcapng')).map((f) => join(dir, f));
}

describe('the image (Dockerfile, built in a debootstrap root)', () => {
  it('runs podtap as its own non-root user, by its entrypoint', async () => {
    console.log(`image rootfs: ${image.image.layers.length} layers, ready in ${buildSeconds.toFixed(1)} s; rebuilt: ${image.ran.map((r) => `${r.step.slice(0, 60)} (${r.seconds.toFixed(1)} s)`).join('; ') || 'nothing'}`);
    const cfg = image.image.config;
    expect(cfg.user).toMatch(/^[1-9]\d*:[1-9]\d*$/);
    expect(cfg.entrypoint).toEqual(['podtap']);
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const version = await inImage([...cfg.entrypoint, '--version'], { user: cfg.user });
    expect(version.exitCode, String(version.all)).toBe(0);
    expect(version.stdout.trim()).toBe(`podtap ${pkg.version}`);
    const byDefault = await inImage([...cfg.entrypoint, ...cfg.cmd], { user: cfg.user });
    expect(byDefault.exitCode, String(byDefault.all)).toBe(0);
    for (const role of ['controller', 'agent', 'collector', 'cleanup']) expect(byDefault.stdout).toContain(`  ${role} `);
    const id = await inImage(['id', '-u'], { user: cfg.user });
    expect(id.stdout.trim()).toBe(cfg.user.split(':')[0]);
    expect(cfg.labels['org.opencontainers.image.version']).toBe(pkg.version);
    // the root filesystem is read-only here, as the chart runs every container
    const write = await inImage(['touch', '/opt/podtap/x'], { user: 'root' });
    expect(write.exitCode).not.toBe(0);
    expect(write.stderr).toContain('Read-only file system');
  });

  it('ships the product only: no development harness and none of its dependencies', async () => {
    const harness = [
      '/opt/podtap/dist/devcluster',
      '/opt/podtap/dist/lab',
      '/opt/podtap/dist/demo',
      '/opt/podtap/node_modules/@podtap',
      '/opt/podtap/node_modules/@bufbuild/cel',
      '/opt/podtap/node_modules/fast-json-patch',
      '/opt/podtap/node_modules/ajv',
    ];
    const present = await inImage(['sh', '-c', `for p in ${harness.join(' ')}; do [ ! -e "$p" ] || echo "$p"; done; ls /opt/podtap/dist/cli/main.js`]);
    expect(present.exitCode, String(present.all)).toBe(0);
    expect(present.stdout.trim().split('\n')).toEqual(['/opt/podtap/dist/cli/main.js']);
    // the development commands point to a clone instead of failing obscurely
    const dev = await inImage(['podtap', 'devcluster'], { user: image.image.config.user });
    expect(dev.exitCode).toBe(2);
    expect(dev.stderr).toContain('a development command of a clone of the repository');
  });

  it('has the tools the agent runs, and no package the Dockerfile does not ask for', async () => {
    const tools = await inImage(['sh', '-c', 'for t in clang bpftool tc ip bridge nsenter setpriv stat mount find; do command -v $t >/dev/null || echo "missing $t"; done; ls /usr/include/bpf/bpf_helpers.h /usr/include/linux/bpf.h /opt/podtap/bpf/podtap.bpf.c']);
    expect(tools.exitCode, String(tools.all)).toBe(0);
    expect(tools.stdout).not.toContain('missing');
    const pkgs = await inImage(['dpkg-query', '-W', '-f', '${Package}\n']);
    const installed = new Set(pkgs.stdout.split('\n'));
    for (const p of ['clang', 'libbpf-dev', 'linux-libc-dev', 'iproute2', 'bpftool', 'util-linux']) expect(installed.has(p), p).toBe(true);
    // recommends and build tools stay out (--no-install-recommends)
    for (const p of ['python3', 'curl', 'wget', 'git', 'make', 'gcc', 'tcpdump', 'tshark', 'procps', 'ca-certificates']) expect(installed.has(p), p).toBe(false);
    // nothing the apt step downloaded is left behind
    const lists = await inImage(['sh', '-c', 'ls /var/lib/apt/lists | grep -v -e ^lock$ -e ^partial$ || true']);
    expect(lists.stdout.trim()).toBe('');
  });
});

describe("the agent's data plane from the image, with the chart's capabilities only", () => {
  let topo: Topology | undefined;
  afterEach(async () => {
    if (topo) {
      await execa('nsenter', [`--net=/run/netns/${topo.node}`, NODE_BIN, 'src/cli/main.ts', 'cleanup'], { reject: false, cwd: ROOT });
      await topo.destroy();
    }
    topo = undefined;
  });

  /** This test's own directory of the host's bpffs, as the chart's /sys/fs/bpf/podtap (bpffs names have no dot). */
  let pinHost = '';
  afterEach(async () => {
    if (pinHost) await rm(pinHost, { recursive: true, force: true });
    pinHost = '';
  });

  async function setup(): Promise<{ topo: Topology; policyDir: string; cacheDir: string }> {
    pinHost = `/sys/fs/bpf/podtap-image-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    await mkdir(pinHost);
    topo = await createTopology({ pods: 2 });
    const policyDir = await mkdtemp(join(work, 'policy-'));
    const cacheDir = join(work, 'compile-cache');
    await execa('mkdir', ['-p', cacheDir]);
    await chmod(policyDir, 0o755);
    await writeFile(join(policyDir, 'p.yaml'), policyYaml({ collector: { address: topo.collector.ip4 }, filter: { protocols: ['ICMP'] } }, topo.prefix));
    return { topo, policyDir, cacheDir };
  }

  function sniff(t: Topology, policyDir: string, cacheDir: string, caps: string[]): ResultPromise<{ reject: false; all: true }> {
    return inImage(['podtap', 'sniff', '--policy', '/mnt/p.yaml', '--iface', t.pods[0]!.hostIf, '--quiet'], {
      netns: t.node,
      user: 'root',
      caps,
      env: { PODTAP_PIN_ROOT: AGENT_PIN_ROOT },
      binds: [
        // podtap's directory of bpffs only, where the chart mounts it
        { host: pinHost, path: AGENT_PIN_ROOT, rw: true },
        { host: cacheDir, path: '/var/cache/podtap', rw: true },
        { host: policyDir, path: '/mnt' },
      ],
    });
  }

  it('compiles, loads and attaches the programs, mirrors the traffic and detaches', async () => {
    const { topo: t, policyDir, cacheDir } = await setup();
    const col = await startCollector(t);
    const s = sniff(t, policyDir, cacheDir, AGENT_CAPS);
    try {
      await waitForLine(s, /podtap: tapping/, 90_000);
    } catch (err) {
      s.kill('SIGKILL');
      throw new Error(`podtap sniff in the image did not start: ${String((await s).all).slice(-3000)}`, { cause: err });
    }
    const ping = await execa('nsenter', [`--net=/run/netns/${t.pods[0]!.ns}`, 'ping', '-c', '5', '-i', '0.2', t.pods[1]!.ip4], { reject: false });
    expect(ping.stdout).toMatch(/5 received/);
    s.kill('SIGINT');
    const done = await s;
    expect(done.exitCode, String(done.all)).toBe(0);
    await new Promise((r) => setTimeout(r, 300));
    col.proc.kill('SIGTERM');
    await col.proc;
    // the object was compiled in the image, by its clang, into the cache volume
    expect((await readdir(join(cacheDir, 'objects'))).filter((f) => f.endsWith('.o')).length).toBeGreaterThan(0);
    const files = await pcapngFiles(col.dir);
    expect(files.length).toBeGreaterThan(0);
    let frames = 0;
    for (const f of files) frames += (await readFrames(f, 'icmp')).length;
    expect(frames).toBe(10);
    expect(await leftovers({ runner: createRunner(t.node), pinRoot: pinHost })).toEqual([]);
    // the uninstall check of docs/install.md, as a node debug pod runs it: the
    // host's bpffs under /host (here /mnt), PODTAP_PIN_ROOT pointing there
    const check = await inImage(['podtap', 'cleanup', '--check'], {
      netns: t.node,
      user: 'root',
      caps: AGENT_CAPS,
      env: { PODTAP_PIN_ROOT: `/mnt/${pinHost.split('/').pop()}` },
      binds: [{ host: '/sys/fs/bpf', path: '/mnt' }],
    });
    expect(check.exitCode, String(check.all)).toBe(0);
    expect(check.stdout).toContain('nothing of podtap is left');
  });

  // What each capability is for, shown by taking it away (docs/security.md's
  // table, which has what the kernel and the tools say without each): podtap
  // refuses to start naming it, before the kernel probes could blame the
  // kernel. CAP_SYS_PTRACE is the veth lookup's, below.
  const capabilityCases: { description: string; drop: string; expected: 'captures' | 'refused at start'; error: RegExp }[] = [
    { description: 'without CAP_NET_ADMIN (sched_cls programs, tc, ip link)', drop: 'net_admin', expected: 'refused at start', error: /podtap sniff lacks CAP_NET_ADMIN \(/ },
    { description: 'without CAP_BPF (maps, programs)', drop: 'bpf', expected: 'refused at start', error: /podtap sniff lacks CAP_BPF \(/ },
    { description: "without CAP_PERFMON (the verifier's pointer arithmetic)", drop: 'perfmon', expected: 'refused at start', error: /podtap sniff lacks CAP_PERFMON \(/ },
    { description: 'without CAP_SYS_PTRACE (not used by sniff --iface)', drop: 'sys_ptrace', expected: 'captures', error: /$^/ },
  ];
  it('takes the capabilities this file takes away from the chart', () => {
    expect(capabilityCases.map((c) => c.drop).sort()).toEqual([...AGENT_CAPS].sort());
    expect(AGENT_CAPS).not.toContain('sys_admin');
  });
  it.each(capabilityCases)('$description: $expected, and leaves nothing behind', async ({ drop, expected, error }) => {
    const caps = AGENT_CAPS.filter((c) => c !== drop);
    const { topo: t, policyDir, cacheDir } = await setup();
    const col = await startCollector(t);
    const s = sniff(t, policyDir, cacheDir, caps);
    let output = '';
    let exited = false;
    s.all?.on('data', (d: Buffer) => (output += d.toString()));
    void s.finally(() => (exited = true));
    const started = Date.now();
    while (!/podtap: tapping/.test(output) && !exited && Date.now() < started + 60_000) await new Promise((r) => setTimeout(r, 100));
    const tapping = /podtap: tapping/.test(output);
    if (tapping) {
      await execa('nsenter', [`--net=/run/netns/${t.pods[0]!.ns}`, 'ping', '-c', '2', '-i', '0.2', t.pods[1]!.ip4], { reject: false });
      s.kill('SIGINT');
    }
    const done = await s;
    col.proc.kill('SIGTERM');
    await col.proc;
    const all = String(done.all);
    console.log(`capabilities [${caps.join(', ')}]: exit ${done.exitCode ?? done.signal} after ${((Date.now() - started) / 1000).toFixed(1)} s\n${all.slice(-600)}`);
    if (expected === 'refused at start') {
      expect(tapping, all).toBe(false);
      expect(done.exitCode, all).not.toBe(0);
      expect(all).toMatch(error);
    } else {
      expect(tapping, all).toBe(true);
      expect(done.exitCode, all).toBe(0);
    }
    expect(await leftovers({ runner: createRunner(t.node), pinRoot: pinHost })).toEqual([]);
  });

  /**
   * A pod as the kubelet makes one, as far as the veth lookup sees it: a
   * process running as the pause container's user (65535), in the pod's
   * network namespace, in the cgroup …/kubepods/besteffort/pod<UID>/….
   */
  async function pausePod(ns: string): Promise<{ uid: string; stop: () => Promise<void> }> {
    const uid = randomUUID();
    const root = `${CGROUP_BASE}/podtap-image-${process.pid}-${uid.slice(0, 8)}`;
    const dir = `${root}/kubepods/besteffort/pod${uid}/c0ffee`;
    await mkdir(dir, { recursive: true });
    const proc = execa('sh', ['-c', `echo $$ > ${dir}/cgroup.procs && exec nsenter --net=/run/netns/${ns} setpriv --reuid 65535 --regid 65535 --clear-groups sleep 600`], { reject: false });
    for (let i = 0; i < 100 && (await readFile(`/proc/${proc.pid}/comm`, 'utf8').catch(() => '')).trim() !== 'sleep'; i++) await new Promise((r) => setTimeout(r, 20));
    return {
      uid,
      stop: async () => {
        proc.kill('SIGKILL');
        await proc;
        for (let d = dir; d.startsWith(root); d = d.slice(0, d.lastIndexOf('/'))) await rmdir(d).catch(() => undefined);
      },
    };
  }

  it("finds a pod's veth by its identity with the chart's capabilities (no CAP_SYS_ADMIN), and not without CAP_SYS_PTRACE", async () => {
    topo = await createTopology({ pods: 1 });
    const pod = topo.pods[0]!;
    const p = await pausePod(pod.ns);
    try {
      const script = [
        "const { resolvePodInterface } = await import('/opt/podtap/dist/agent/resolve.js');",
        "const { createRunner } = await import('/opt/podtap/dist/datapath/index.js');",
        'const r = await resolvePodInterface(createRunner(), { uid: process.argv[1], ips: [process.argv[2]] });',
        'console.log(JSON.stringify(r ?? null));',
      ].join('\n');
      const look = (caps: string[]) => inImage(['node', '--input-type=module', '-e', script, p.uid, pod.ip4], { netns: topo!.node, user: 'root', caps });
      const found = await look(AGENT_CAPS);
      expect(found.exitCode, String(found.all)).toBe(0);
      expect(JSON.parse(found.stdout)).toMatchObject({ ifname: pod.hostIf, method: 'pod' });
      const withoutPtrace = await look(AGENT_CAPS.filter((c) => c !== 'sys_ptrace'));
      expect(withoutPtrace.exitCode, String(withoutPtrace.all)).toBe(0);
      expect(JSON.parse(withoutPtrace.stdout), 'the pause process runs as another user: its /proc/PID/ns/net is out of reach').toBeNull();
    } finally {
      await p.stop();
    }
  });

  // Why agent.netnsFallback gives the agent CAP_SYS_ADMIN: ip -n enters namespaces (setns).
  it('looks into pod network namespaces (the netns fallback) with CAP_SYS_ADMIN, and not without', async () => {
    topo = await createTopology({ pods: 1 });
    const pod = topo.pods[0]!;
    const binds = [{ host: '/run/netns', path: '/run/netns' }];
    const look = (caps: string[]) => inImage(['ip', '-n', pod.ns, '-j', 'addr', 'show'], { netns: topo!.node, user: 'root', caps, binds });
    const withAdmin = await look([...AGENT_CAPS, 'sys_admin']);
    expect(withAdmin.exitCode, String(withAdmin.all)).toBe(0);
    expect(withAdmin.stdout).toContain(pod.ip4);
    const withoutAdmin = await look(AGENT_CAPS);
    expect(withoutAdmin.exitCode).not.toBe(0);
    expect(String(withoutAdmin.all)).toMatch(/Operation not permitted|setting the network namespace/i);
  });
});

describe("the chart's init containers, run from the image", () => {
  it('bpffs: passes on a directory of a BPF filesystem and stops the pod with a message on anything else', async () => {
    const ds = (await render()).objects.find((o) => o.kind === 'DaemonSet')!;
    type Init = { name: string; command: string[]; securityContext: { runAsUser: number; runAsGroup: number }; volumeMounts: { mountPath: string }[] };
    const init = (ds.spec as { template: { spec: { initContainers: Init[] } } }).template.spec.initContainers.find((c) => c.name === 'bpffs')!;
    const user = `${init.securityContext.runAsUser}:${init.securityContext.runAsGroup}`;
    const path = init.volumeMounts[0]!.mountPath;
    const dir = `/sys/fs/bpf/podtap-image-init-${process.pid}`;
    await mkdir(dir, { recursive: true });
    try {
      const ok = await inImage(init.command, { user, caps: [], binds: [{ host: dir, path }] });
      expect(ok.exitCode, String(ok.all)).toBe(0);
    } finally {
      await rmdir(dir);
    }
    const plain = await mkdtemp(join(work, 'not-bpffs-'));
    const refused = await inImage(init.command, { user, caps: [], binds: [{ host: plain, path }] });
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain('/sys/fs/bpf/podtap on this node is not on a BPF filesystem');
  });

  it('captures-owner: hands a host directory to the collector with CAP_CHOWN alone', async () => {
    const d = (await render({ values: { collector: { persistence: { hostPath: '/var/lib/podtap/captures' } } } })).objects.find((o) => o.kind === 'Deployment' && o.metadata.name.endsWith('-collector'))!;
    const init = (d.spec as { template: { spec: { initContainers: { name: string; command: string[]; securityContext: { capabilities: { add: string[] } } }[] } } }).template.spec.initContainers.find((c) => c.name === 'captures-owner')!;
    const dir = await mkdtemp(join(work, 'captures-'));
    const caps = init.securityContext.capabilities.add.map((c) => c.toLowerCase());
    const r = await inImage(init.command, { user: 'root', caps, binds: [{ host: dir, path: '/captures', rw: true }] });
    expect(r.exitCode, String(r.all)).toBe(0);
    const st = await stat(dir);
    expect([st.uid, st.gid]).toEqual([65532, 65532]);
    await rm(dir, { recursive: true, force: true });
  });
});

describe('the image rootfs cache', () => {
  it('lives outside the work tree and holds only the current layers', async () => {
    expect(CACHE.startsWith(ROOT)).toBe(false);
    const layers = await readdir(join(CACHE, 'layers'));
    const used = new Set(image.stages.flatMap((s) => s.layers.map((l) => l.split('/').pop()!)));
    expect(layers.filter((l) => !used.has(l))).toEqual([]);
    expect(existsSync(join(image.baseLayer, 'diff/usr/local/bin/node'))).toBe(true);
  });
});

/**
 * `podtap demo`: the whole product on this machine, in a minute. A node with
 * three pods and a collector in network namespaces, the embedded Kubernetes
 * API (--real: the upstream kube-apiserver and etcd), the controller, the node agent and the collector as real processes;
 * then `kubectl apply -f examples/sniffpolicy.yaml`, traffic, the policy's
 * status as kubectl shows it, and the capture read back by tshark.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { startApiServer } from '../../test/helpers/apiserver.ts';
import { Lab, type LabApi } from '../../test/lab/cluster.ts';
import { inNs } from '../../test/lab/netns.ts';
import { requireRoot, requireTools } from '../../src/datapath/tools.ts';
import { sniffPolicies } from '../../src/api/index.ts';
import { ExitCode, UserError, errorMessage } from '../../src/util/errors.ts';
import { silentLogger } from '../../src/util/log.ts';

const EXAMPLE = fileURLToPath(new URL('../../examples/sniffpolicy.yaml', import.meta.url));

const HELP = `Usage: podtap demo [--real] [--keep] [--out DIR] [--api-port N]

Runs podtap end to end on this machine (root; nothing leaves it):
  - a "node" with three pods (demo/web-1, demo/web-2 with app=web, demo/db-1)
    and a collector, each in its own network namespace;
  - the embedded Kubernetes API (a development stand-in, not a cluster; with
    --real the upstream kube-apiserver and etcd instead), the controller, the
    node agent and the collector as real processes;
  - kubectl apply -f examples/sniffpolicy.yaml (captures the app=web pods);
  - a TCP transfer, large pings and a 64 KB UDP datagram between the pods;
  - kubectl get sniffpolicies, the pcapng file, and tshark's summary of it.
Everything is removed at the end or on Ctrl-C.

Options:
  --real        the upstream kube-apiserver and etcd (TLS, RBAC, admission)
                instead of the embedded stand-in: the same story on the
                reference API (scripts/demo.sh --real builds them first: cold
                ~22 min, then cached)
  --keep        leave it running and print the KUBECONFIG to use with kubectl
                (Ctrl-C removes everything)
  --out DIR     where the collector writes (default ./captures)
  --api-port N  port of the embedded API (default: any free port; not with --real)
  --help        this text`;

/** The real kube-apiserver and etcd (the test suite's: TLS, RBAC, admission) on @host. */
async function realApi(host: string): Promise<LabApi> {
  const api = await startApiServer({ address: host }).catch((err: unknown) => {
    throw new UserError(`the real kube-apiserver did not start: ${errorMessage(err)}`, {
      exitCode: ExitCode.missingTool, hint: 'run scripts/demo.sh --real (it builds kube-apiserver and etcd first), or scripts/cluster/build.sh kube', cause: err,
    });
  });
  return { url: api.url, kubeconfig: api.kubeconfig, close: () => api.stop() };
}

function step(msg: string): void {
  console.log(`\n\x1b[1m==> ${msg}\x1b[0m`);
}

async function kubectl(kubeconfig: string, args: string[]): Promise<string> {
  const r = await execa('kubectl', ['--kubeconfig', kubeconfig, ...args], { reject: false, all: true });
  if (r.exitCode !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${r.all}`);
  return `${String(r.all).trimEnd()}\n`;
}

export async function demoCommand(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { real: { type: 'boolean' }, keep: { type: 'boolean' }, out: { type: 'string', default: 'captures' }, 'api-port': { type: 'string', default: '0' }, help: { type: 'boolean', short: 'h' } },
    }));
  } catch (err) {
    throw new UserError(errorMessage(err), { exitCode: ExitCode.usage, hint: 'see podtap demo --help' });
  }
  if (values.help) {
    console.log(HELP);
    return ExitCode.ok;
  }
  if (values.real && values['api-port'] !== '0') {
    throw new UserError('--api-port sets the embedded API\'s port; --real starts kube-apiserver on ports of its own', { exitCode: ExitCode.usage, hint: 'leave out --api-port' });
  }
  requireRoot('podtap demo');
  await requireTools();
  for (const t of [['kubectl', 'kubectl'], ['tshark', 'tshark'], ['iperf3', 'iperf3'], ['ping', 'iputils-ping']] as const) {
    if ((await execa('sh', ['-c', `command -v ${t[0]}`], { reject: false })).exitCode !== 0) {
      throw new UserError(`the demo needs ${t[0]}`, { exitCode: ExitCode.missingTool, hint: `install the Debian package "${t[1]}", or run scripts/setup.sh` });
    }
  }
  const out = resolve(values.out);
  await mkdir(out, { recursive: true });

  step(`Building a node with three pods and a collector in network namespaces${values.real ? ', and starting kube-apiserver and etcd' : ''}`);
  const lab = await Lab.start({
    apiPort: Number(values['api-port']),
    ...(values.real ? { api: realApi } : {}),
    logger: silentLogger,
    pods: [
      { namespace: 'demo', name: 'web-1', labels: { app: 'web' } },
      { namespace: 'demo', name: 'web-2', labels: { app: 'web' } },
      { namespace: 'demo', name: 'db-1', labels: { app: 'db' } },
    ],
  });
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    for (const p of lab.pods) console.log(`  pod ${p.namespace}/${p.name.padEnd(6)} ${p.ip4.padEnd(13)} host veth ${p.hostIf}  labels ${JSON.stringify(p.labels)}`);
    console.log(`  collector        ${lab.topo.collector.ip4.padEnd(13)} behind the node's uplink (MTU 1500)`);
    console.log(values.real
      ? `  kube-apiserver ${(await lab.client.request<{ gitVersion?: string }>('GET', '/version')).gitVersion ?? ''} and etcd at ${lab.api.url} (TLS, RBAC, admission: the reference API)`
      : `  embedded Kubernetes API at ${lab.api.url} (a development stand-in, not a cluster)`);

    step('Starting the collector, the controller and the node agent');
    const collector = lab.startCollector(out);
    const controller = lab.startController();
    const agent = lab.startAgent();
    void controller;
    void agent;
    void collector;

    step(`kubectl apply -f ${EXAMPLE.replace(`${process.cwd()}/`, '')}`);
    process.stdout.write(await kubectl(lab.kubeconfig, ['apply', '-f', EXAMPLE]));

    step('Waiting for the policy to be Ready');
    const t0 = Date.now();
    let ready = false;
    while (!ready && !interrupted && Date.now() - t0 < 60_000) {
      const p = await sniffPolicies(lab.client).get('demo', 'web-debug');
      const c = p.status?.conditions?.find((x) => x.type === 'Ready');
      process.stdout.write(`\r\x1b[K  ${((Date.now() - t0) / 1000).toFixed(1)}s  Ready=${c?.status ?? '?'} (${c?.reason ?? 'pending'})  nodes ${p.status?.nodeSummary ?? '0/0'}  pods ${p.status?.selectedPods ?? 0}`);
      ready = c?.status === 'True';
      if (!ready) await new Promise((r) => setTimeout(r, 250));
    }
    console.log('');
    if (!ready) throw new UserError('the policy did not become Ready within 60 s', { hint: `agent log:\n${agent.output().slice(-2000)}` });

    const [web1, web2, db1] = lab.pods as [typeof lab.pods[0], typeof lab.pods[0], typeof lab.pods[0]];
    step('Driving traffic: a TCP transfer, large pings and a 64 KB UDP datagram');
    const server = execa('nsenter', [`--net=/run/netns/${db1.netns}`, 'iperf3', '-s', '-1', '-p', '5201'], { reject: false });
    await new Promise((r) => setTimeout(r, 300));
    const tcp = await execa('nsenter', [`--net=/run/netns/${web1.netns}`, 'iperf3', '-c', db1.ip4, '-p', '5201', '-t', '3', '-b', '200M', '-J'], { reject: false });
    await server;
    const mbit = tcp.exitCode === 0 ? ((JSON.parse(tcp.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second / 1e6).toFixed(0) : '?';
    console.log(`  TCP  web-1 -> db-1      3 s at ${mbit} Mbit/s (GSO super-packets up to 64 KB on the veth)`);
    const ping = await inNs(web2.netns, 'ping', ['-c', '3', '-i', '0.2', '-s', '30000', web1.ip4]);
    console.log(`  ICMP web-2 -> web-1     ${/\d+ packets transmitted, \d+ received/.exec(ping)?.[0] ?? ping}, 30000-byte payloads (fragmented by the pod)`);
    await execa('nsenter', [`--net=/run/netns/${web1.netns}`, process.execPath, '--input-type=module', '-e',
      `import { createSocket } from 'node:dgram'; const s = createSocket('udp4'); s.send(Buffer.alloc(65507, 0x5a), 9, '${db1.ip4}', () => s.close());`]);
    console.log('  UDP  web-1 -> db-1      one 65507-byte datagram');
    await new Promise((r) => setTimeout(r, 2500)); // one report interval: counters reach the status

    step('kubectl get sniffpolicies -n demo');
    process.stdout.write(await kubectl(lab.kubeconfig, ['get', 'sniffpolicies', '-n', 'demo']));
    process.stdout.write(await kubectl(lab.kubeconfig, ['get', 'sniffpolicies', '-n', 'demo', '-o', 'wide']));

    if (values.keep && !interrupted) {
      step('Left running (--keep)');
      console.log(`  export KUBECONFIG=${lab.kubeconfig}`);
      console.log('  kubectl get sniffpolicies -A          kubectl describe sniffpolicy -n demo web-debug');
      console.log(`  captures in ${out}`);
      console.log('  Ctrl-C removes everything.');
      while (!interrupted) await new Promise((r) => setTimeout(r, 500));
    }

    step('Stopping the collector and reading the capture back with tshark');
    collector.proc.kill('SIGTERM');
    await collector.proc;
    const files = (await readdir(out, { recursive: true })).filter((f) => String(f).endsWith('.pcapng')).map((f) => resolve(out, String(f)));
    const newest = (await Promise.all(files.map(async (f) => ({ f, m: (await stat(f)).mtimeMs })))).sort((a, b) => b.m - a.m)[0]?.f;
    if (!newest || !existsSync(newest)) throw new UserError(`no pcapng file was written to ${out}`, { hint: collector.output().slice(-2000) });
    console.log(`  pcapng: ${newest}`);
    const rows = (await execa('tshark', ['-r', newest, '-T', 'fields', '-e', 'frame.interface_name', '-e', 'frame.len', '-e', 'frame.packet_flags_direction', '-e', '_ws.col.Protocol'])).stdout
      .split('\n').filter(Boolean).map((l) => l.split('\t'));
    const byIf = new Map<string, { packets: number; bytes: number; largest: number; out: number; in: number; protos: Map<string, number> }>();
    for (const [name = '?', len = '0', dir = '0', proto = '?'] of rows) {
      const e = byIf.get(name) ?? { packets: 0, bytes: 0, largest: 0, out: 0, in: 0, protos: new Map<string, number>() };
      e.packets++;
      e.bytes += Number(len);
      e.largest = Math.max(e.largest, Number(len));
      const d = Number(dir); // 0x00000001 inbound (to the pod), 0x00000002 outbound (sent by it)
      if (d === 2) e.out++;
      else if (d === 1) e.in++;
      e.protos.set(proto, (e.protos.get(proto) ?? 0) + 1);
      byIf.set(name, e);
    }
    console.log('  interface      packets  sent  received     bytes  largest  protocols');
    for (const [name, e] of [...byIf].sort()) {
      const protos = [...e.protos].sort((a, b) => b[1] - a[1]).slice(0, 4).map(([p, n]) => `${p} ${n}`).join(', ');
      console.log(`  ${name.padEnd(13)} ${String(e.packets).padStart(8)} ${String(e.out).padStart(5)} ${String(e.in).padStart(9)} ${String(e.bytes).padStart(9)} ${String(e.largest).padStart(8)}  ${protos}`);
    }
    console.log(`\n  demo/db-1 is not in the file: the policy selects app=web only (db-1 is seen`);
    console.log(`  through web-1's traffic to it). Open the file in Wireshark: one interface per pod,`);
    console.log(`  direction per packet, every packet whole. tshark -r ${newest}`);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    step('Removing everything');
    await lab.stop();
    console.log('  done: namespaces, programs, pins and processes are gone');
  }
  return interrupted ? 130 : ExitCode.ok;
}

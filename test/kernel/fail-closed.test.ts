/**
 * Fail closed (issue 9 part 6): the data plane stops mirroring by itself when
 * the agent stops renewing its lease. The agent (a real process) is killed
 * with SIGKILL, so nothing of it can detach anything; the controller is
 * killed too, so nothing else can act either; the pods keep talking. tcpdump
 * at the collector is the judge: copies arrive while the agent lives, none
 * arrive once the lease has run out, though the pods' traffic goes on.
 * A new agent adopts the session and mirroring resumes. And the duration
 * limit is the data plane's too: a frozen `podtap sniff` cannot overrun it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sniffPolicies, type SniffPolicy } from '../../src/api/index.ts';
import { Lab, type LabProcess } from '../lab/cluster.ts';
import { startCapture } from '../helpers/harness.ts';
import { createTopology, type Topology } from '../helpers/netns.ts';
import { ping as pingFrom } from '../helpers/traffic.ts';

const LEASE_S = 3;
/** Slack for the kill itself and the tcpdump timestamps (the bound is the lease: renewed every third of it). */
const SLACK_S = 0.5;

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const t0 = Date.now();
  let last: unknown;
  while (Date.now() - t0 < timeoutMs) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

describe('fail closed: a killed agent stops mirroring within its lease', () => {
  let lab: Lab;
  let out = '';
  let agent: LabProcess;
  let controller: LabProcess;

  /** Epoch seconds of every tunnel datagram reaching the collector while @during runs. */
  async function tunnelTimes(during: () => Promise<void>): Promise<number[]> {
    const td = execa('nsenter', [`--net=/run/netns/${lab.topo.collector.ns}`, 'tcpdump', '-i', 'eth0', '-n', '-l', '-tt', '--immediate-mode', 'udp', 'port', '6081'], { reject: false, buffer: true });
    await new Promise((r) => setTimeout(r, 500)); // tcpdump listening
    try {
      await during();
    } finally {
      await new Promise((r) => setTimeout(r, 300));
      td.kill('SIGINT');
    }
    const r = await td;
    return String(r.stdout).split('\n').filter((l) => /^\d+\.\d+ IP /.test(l)).map((l) => Number(l.split(' ')[0]));
  }
  const ping = (seconds: number): ResultPromise => {
    const from = lab.pods.find((p) => p.name === 'web-1')!;
    const to = lab.pods.find((p) => p.name === 'db-1')!;
    return execa('nsenter', [`--net=/run/netns/${from.netns}`, 'ping', '-q', '-i', '0.05', '-w', String(seconds), to.ip4], { reject: false });
  };

  beforeAll(async () => {
    lab = await Lab.start({ pods: [{ namespace: 'demo', name: 'web-1', labels: { app: 'web' } }, { namespace: 'demo', name: 'db-1', labels: { app: 'db' } }] });
    out = await mkdtemp(join(tmpdir(), 'podtap-failclosed-'));
    lab.startCollector(out);
    controller = lab.startController();
    agent = lab.startAgent(['--lease-seconds', String(LEASE_S)]);
    await sniffPolicies(lab.client).create({
      apiVersion: 'podtap.io/v1alpha1', kind: 'SniffPolicy', metadata: { name: 'web', namespace: 'demo' },
      spec: { podSelector: { matchLabels: { app: 'web' } }, collector: { address: lab.topo.collector.ip4 } },
    } as unknown as SniffPolicy);
    await until('Ready', async () => (await sniffPolicies(lab.client).get('demo', 'web')).status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True', 60_000);
  }, 180_000);

  afterAll(async () => {
    await lab?.stop();
    if (out) await rm(out, { recursive: true, force: true });
  });

  it(`mirrors while the agent renews, and nothing from ${LEASE_S} s after SIGKILL though the pods keep talking`, async () => {
    let killedAt = 0;
    let pinged: Awaited<ResultPromise> | undefined;
    const times = await tunnelTimes(async () => {
      const p = ping(3 * LEASE_S + 4);
      // longer than a lease: the agent's renewals keep it going
      await new Promise((r) => setTimeout(r, (LEASE_S + 1) * 1000));
      killedAt = Date.now() / 1000;
      agent.proc.kill('SIGKILL');
      controller.proc.kill('SIGKILL');
      pinged = await p;
    });
    expect(pinged!.exitCode, String(pinged!.stdout)).toBe(0); // the pods' traffic went on to the end
    const before = times.filter((t) => t < killedAt);
    const after = times.filter((t) => t >= killedAt);
    // mirrored across more than one lease while the agent lived
    expect(before.length).toBeGreaterThan(20);
    expect(before[before.length - 1]! - before[0]!).toBeGreaterThan(LEASE_S);
    // then quiet within the lease, for the remaining 2 leases of traffic
    const last = after.length ? after[after.length - 1]! : killedAt;
    expect(last - killedAt).toBeLessThanOrEqual(LEASE_S + SLACK_S);
  }, 60_000);

  it('a new agent adopts the session and renews: mirroring resumes, for longer than a lease', async () => {
    agent = lab.startAgent(['--lease-seconds', String(LEASE_S)]);
    controller = lab.startController();
    // the restarted agent re-applies the assignment (a fresh lease): copies again
    await until('copies again', async () => (await tunnelTimes(async () => void (await ping(1)))).length > 0, 30_000);
    let endedAt = 0;
    const times = await tunnelTimes(async () => {
      await ping(2 * LEASE_S);
      endedAt = Date.now() / 1000;
    });
    expect(times.length).toBeGreaterThan(20);
    // still mirrored at the end, two leases later: renewed
    expect(endedAt - times[times.length - 1]!).toBeLessThan(1);
  }, 90_000);
});

describe('the duration limit is enforced by the data plane', () => {
  let topo: Topology | undefined;
  afterAll(async () => {
    await topo?.destroy();
  });

  it('a frozen podtap sniff cannot overrun limits.duration: copies stop at the deadline', async () => {
    const DURATION_S = 3;
    topo = await createTopology({ pods: 2 });
    const [p1, p2] = topo.pods as [Topology['pods'][0], Topology['pods'][0]];
    // the deadline is set before the program is attached: it lies before this
    const run = await startCapture(topo, { collector: { address: topo.collector.ip4 }, filter: { protocols: ['ICMP'] }, limits: { duration: `${DURATION_S}s` } }, [p1.hostIf], { name: topo.prefix });
    const deadline = Date.now() / 1000 + DURATION_S;
    // userspace can no longer stop anything: only the data plane can
    process.kill(run.sniff.pid!, 'SIGSTOP');
    const td = execa('nsenter', [`--net=/run/netns/${topo.collector.ns}`, 'tcpdump', '-i', 'eth0', '-n', '-l', '-tt', '--immediate-mode', 'udp', 'port', '6081'], { reject: false });
    await new Promise((r) => setTimeout(r, 300));
    const pinged = await pingFrom(p1.ns, p2.ip4, { count: Math.round((DURATION_S + 3) / 0.05), interval: 0.05 });
    td.kill('SIGINT');
    const times = String((await td).stdout).split('\n').filter((l) => /^\d+\.\d+ IP /.test(l)).map((l) => Number(l.split(' ')[0]));
    process.kill(run.sniff.pid!, 'SIGCONT');
    await run.stop();
    expect(pinged.received).toBe(pinged.sent); // the pods' traffic went on
    expect(times.filter((t) => t < deadline).length).toBeGreaterThan(10); // mirrored until the deadline
    expect(times.filter((t) => t > deadline + SLACK_S)).toEqual([]); // and not after, for 3 s of traffic
  }, 90_000);
});

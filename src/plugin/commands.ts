/**
 * `kubectl podtap list`, `status` and `fetch`: the stored captures and the
 * policies behind them.
 */
import { createWriteStream } from 'node:fs';
import { basename } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { SniffPolicy } from '../api/index.ts';
import { ExitCode, UserError } from '../util/errors.ts';
import { formatSize } from '../util/units.ts';
import type { PluginIO } from './capture.ts';
import { connectCollector, get, getJson, type CaptureItem, type CollectorEndpoint, type CollectorFlags } from './collector-api.ts';
import type { Kube } from './kube.ts';
import { tunnelCheck, type CollectorCounts } from './tunnel.ts';

/** Columns padded to their widest cell, as kubectl prints tables. */
export function columns(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return [head, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]!))).join('   ')).join('\n') + '\n';
}

export function age(iso: string | undefined, now = Date.now()): string {
  if (!iso) return '<unknown>';
  const s = Math.max(0, Math.floor((now - Date.parse(iso)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172_800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

async function withCollector<T>(kube: Kube | undefined, f: CollectorFlags, io: PluginIO, fn: (ep: CollectorEndpoint) => Promise<T>): Promise<T> {
  const ep = await connectCollector(kube, f, io.env);
  try {
    return await fn(ep);
  } finally {
    await ep.close();
  }
}

export async function listCaptures(
  kube: Kube | undefined,
  o: { namespace: string | undefined; policy?: string | undefined; json: boolean; collector: CollectorFlags },
  io: PluginIO,
): Promise<number> {
  const q = new URLSearchParams({ ...(o.namespace ? { namespace: o.namespace } : {}), ...(o.policy ? { policy: o.policy } : {}) });
  const { items } = await withCollector(kube, o.collector, io, (ep) => getJson<{ items: CaptureItem[] }>(ep, `/api/v1/captures${q.size ? `?${q}` : ''}`));
  if (o.json) {
    io.stdout.write(`${JSON.stringify({ items }, null, 2)}\n`);
    return ExitCode.ok;
  }
  if (items.length === 0) {
    io.stderr.write(`No captures${o.namespace ? ` in namespace ${o.namespace}` : ''}${o.policy ? ` of policy ${o.policy}` : ''}.\n`);
    return ExitCode.ok;
  }
  io.stdout.write(
    columns(
      ['NAMESPACE', 'POLICY', 'SIZE', 'STARTED', 'STATE', 'PATH'],
      items.map((e) => [e.namespace ?? '-', e.policy ?? '-', formatSize(e.size), e.start, e.open ? 'writing' : 'closed', e.path]),
    ),
  );
  return ExitCode.ok;
}

function phase(p: SniffPolicy): string {
  const c = p.status?.conditions ?? [];
  if (c.find((x) => x.type === 'Completed' && x.status === 'True')) return 'Completed';
  if (c.find((x) => x.type === 'Degraded' && x.status === 'True')) return 'Degraded';
  if (c.find((x) => x.type === 'Ready' && x.status === 'True')) return 'Ready';
  return c.length ? 'NotReady' : 'Pending';
}

export async function status(
  kube: Kube,
  o: { namespace: string | undefined; name?: string | undefined; collector: CollectorFlags; withCollector: boolean },
  io: PluginIO,
): Promise<number> {
  let policies: SniffPolicy[];
  if (o.name) {
    const p = await kube.getPolicy(o.namespace ?? kube.namespace, o.name);
    if (!p) throw new UserError(`no SniffPolicy ${o.namespace ?? kube.namespace}/${o.name}`, { exitCode: ExitCode.failure });
    policies = [p];
  } else {
    policies = await kube.listPolicies(o.namespace);
  }
  if (policies.length === 0) io.stderr.write(`No SniffPolicies${o.namespace ? ` in namespace ${o.namespace}` : ''}.\n`);
  else {
    io.stdout.write(
      columns(
        ['NAMESPACE', 'NAME', 'PHASE', 'NODES', 'PODS', 'PACKETS', 'BYTES', 'LOST', 'BY', 'AGE'],
        policies.map((p) => [
          p.metadata.namespace ?? '', p.metadata.name ?? '', phase(p), p.status?.nodeSummary ?? '-', String(p.status?.selectedPods ?? 0),
          String(p.status?.packets ?? 0), formatSize(p.status?.bytes ?? 0), String(p.status?.lost ?? 0),
          p.metadata.labels?.['app.kubernetes.io/managed-by'] === 'kubectl-podtap' ? 'capture' : 'policy', age(p.metadata.creationTimestamp),
        ]),
      ),
    );
  }
  if (o.name) {
    for (const c of policies[0]!.status?.conditions ?? []) io.stdout.write(`  ${c.type}=${c.status} ${c.reason ?? ''}${c.message ? `: ${c.message}` : ''}\n`);
  }
  if (o.withCollector) {
    try {
      const s = await withCollector(kube, o.collector, io, (ep) => getJson<Record<string, unknown> & CollectorCounts>(ep, '/api/v1/status'));
      const n = (k: string): number => Number(s[k] ?? 0);
      io.stdout.write(
        `\ncollector: received ${n('received')} datagrams, rebuilt ${n('rebuilt')} packets, written ${n('written')}, lost ${n('lost')}, ` +
          `malformed ${n('malformed')}, kernel dropped ${n('kernelDropped')}, write dropped ${n('writeDropped')}; ` +
          `${n('files')} files, ${formatSize(n('diskUsage'))} on disk, ${formatSize(n('diskFree'))} free${s.diskFull ? ' — DISK FULL, not writing' : ''}\n`,
      );
      // one policy asked for: is its tunnel delivering? (mirrored by the agents vs rebuilt by the collector)
      if (o.name) io.stdout.write(`${tunnelCheck(policies[0]!, o.collector, s).line}\n`);
    } catch (err) {
      io.stderr.write(`(collector status unavailable: ${err instanceof Error ? err.message : String(err)})\n`);
    }
  }
  return ExitCode.ok;
}

export async function fetchCapture(
  kube: Kube | undefined,
  o: { path?: string | undefined; namespace: string | undefined; policy?: string | undefined; write?: string | undefined; stdout: boolean; collector: CollectorFlags },
  io: PluginIO,
): Promise<number> {
  return withCollector(kube, o.collector, io, async (ep) => {
    let path = o.path;
    if (!path) {
      if (!o.policy) throw new UserError('fetch what? a PATH from `kubectl podtap list`, or --policy NAME for its newest file', { exitCode: ExitCode.usage });
      const q = new URLSearchParams({ policy: o.policy, ...(o.namespace ? { namespace: o.namespace } : {}) });
      const { items } = await getJson<{ items: CaptureItem[] }>(ep, `/api/v1/captures?${q}`);
      const newest = items.sort((a, b) => Date.parse(a.start) - Date.parse(b.start) || a.seq - b.seq).at(-1);
      if (!newest) throw new UserError(`no captures of policy ${o.policy}`, { exitCode: ExitCode.failure });
      path = newest.path;
    }
    const res = await get(ep, `/api/v1/captures/${encodeURIComponent(path)}`);
    if (o.stdout) {
      await pipeline(res, io.stdout, { end: false });
      return ExitCode.ok;
    }
    const file = o.write ?? basename(path);
    await pipeline(res, createWriteStream(file));
    io.stderr.write(`kubectl podtap: ${path} → ${file} (${formatSize(Number(res.headers['content-length'] ?? 0))})\n`);
    return ExitCode.ok;
  });
}

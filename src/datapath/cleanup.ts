/**
 * Remove every trace of podtap from a node: tc filters running podtap programs
 * (on any interface of the namespace), capture devices, and all pins. Used by
 * `podtap cleanup`, the agent's uninstall hook and the tests.
 */
import { readdir, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../util/log.ts';
import { silentLogger } from '../util/log.ts';
import { createRunner, type Runner } from './exec.ts';
import { CAPTURE_DEVICE_RE, deleteLink, listLinks } from './netdev.ts';
import { PIN_ROOT } from './session.ts';
import { deleteFilter, isPodtapProgram, listFilters } from './tc.ts';

export interface CleanupReport {
  filters: number;
  devices: number;
  pins: boolean;
}

export async function cleanupAll(opts: { runner?: Runner; pinRoot?: string; logger?: Logger; keepPins?: boolean } = {}): Promise<CleanupReport> {
  const runner = opts.runner ?? createRunner();
  const log = opts.logger ?? silentLogger;
  const report: CleanupReport = { filters: 0, devices: 0, pins: false };
  const links = await listLinks(runner);
  for (const link of links) {
    for (const hook of ['ingress', 'egress'] as const) {
      for (const f of await listFilters(runner, link.ifname, hook)) {
        if (isPodtapProgram(f.progName)) {
          await deleteFilter(runner, f);
          report.filters++;
        }
      }
    }
  }
  for (const link of links) {
    if (CAPTURE_DEVICE_RE.test(link.ifname) && link.linkinfo?.info_kind === 'veth' && link.ifname.startsWith('ptc')) {
      await deleteLink(runner, link.ifname);
      report.devices++;
    }
  }
  if (!opts.keepPins) {
    const root = opts.pinRoot ?? PIN_ROOT;
    for (const e of await readdir(root).catch(() => [])) await rm(join(root, e), { recursive: true, force: true });
    // the root itself may be a mount point (the chart mounts the host's
    // /sys/fs/bpf/podtap there): then it stays, empty
    await rmdir(root).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT' && err.code !== 'EBUSY') throw err;
    });
    report.pins = true;
  }
  log.info(report, 'podtap removed from this node');
  return report;
}

/** What of podtap is still present (for tests and `podtap cleanup --check`). */
export async function leftovers(opts: { runner?: Runner; pinRoot?: string } = {}): Promise<string[]> {
  const runner = opts.runner ?? createRunner();
  const found: string[] = [];
  for (const link of await listLinks(runner)) {
    if (/^pt[cp][a-z0-9]{1,10}$/.test(link.ifname) && link.linkinfo?.info_kind === 'veth') found.push(`device ${link.ifname}`);
    for (const hook of ['ingress', 'egress'] as const) {
      for (const f of await listFilters(runner, link.ifname, hook)) {
        if (isPodtapProgram(f.progName)) found.push(`tc filter ${link.ifname} ${hook} pref ${f.pref} (${f.progName})`);
      }
    }
  }
  const r = await runner.run('find', [opts.pinRoot ?? PIN_ROOT, '-mindepth', '1'], { netnsScoped: false });
  if (r.exitCode === 0) for (const l of r.stdout.split('\n').filter(Boolean)) found.push(`pin ${l}`);
  return found;
}

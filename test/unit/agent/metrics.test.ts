/** The agent's series: one name per data-plane count, loss reasons that add up, and a policy's series gone with its session. */
import { describe, expect, it } from 'vitest';
import { LOSS_REASONS, REASONS, emptyCounters, lost, type Counters } from '../../../src/datapath/counters.ts';
import { AGENT_PREFIX, PER_REASON, createAgentMetrics } from '../../../src/agent/metrics.ts';

function counters(values: Partial<Record<(typeof REASONS)[number], number>>): Counters {
  const c = emptyCounters();
  for (const [r, n] of Object.entries(values)) c[r as keyof Counters] = { packets: n, bytes: n * 100 };
  return c;
}

/** value of one series in the registry's text, or undefined */
async function value(text: Promise<string>, series: string): Promise<number | undefined> {
  const line = (await text).split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
}

describe('agent metrics', () => {
  it('exports every data-plane count exactly once: by its own name, or as a reason of lost_packets_total', () => {
    const named = PER_REASON.map((s) => s.reason);
    expect(new Set(named).size).toBe(named.length);
    expect([...named, ...LOSS_REASONS].sort()).toEqual([...REASONS].sort());
  });

  it('counts growth per policy; the lost reasons add up to the lost count', async () => {
    const m = createAgentMetrics();
    const p = { namespace: 'shop', name: 'web' };
    m.observe(p, counters({ matched: 10, mirrored: 7, rateLimited: 2, noRoute: 1 }));
    m.observe(p, counters({ matched: 15, mirrored: 11, rateLimited: 3, noRoute: 1 }));
    const text = m.registry.metrics();
    const l = '{namespace="shop",policy="web"}';
    expect(await value(text, `${AGENT_PREFIX}matched_packets_total${l}`)).toBe(15);
    expect(await value(text, `${AGENT_PREFIX}mirrored_packets_total${l}`)).toBe(11);
    expect(await value(text, `${AGENT_PREFIX}mirrored_bytes_total${l}`)).toBe(1100);
    let sum = 0;
    for (const r of LOSS_REASONS) sum += (await value(text, `${AGENT_PREFIX}lost_packets_total{namespace="shop",policy="web",reason="${r}"}`)) ?? NaN;
    expect(sum).toBe(lost(counters({ rateLimited: 3, noRoute: 1 })));
  });

  it('a new object (counts back to zero) is counted from zero, not as a negative step', async () => {
    const m = createAgentMetrics();
    const p = { namespace: 'shop', name: 'web' };
    m.observe(p, counters({ matched: 50 }));
    m.observe(p, counters({ matched: 4 }));
    expect(await value(m.registry.metrics(), `${AGENT_PREFIX}matched_packets_total{namespace="shop",policy="web"}`)).toBe(54);
  });

  it('forget removes every series of the policy and no other', async () => {
    const m = createAgentMetrics();
    m.observe({ namespace: 'shop', name: 'podtap-capture-1' }, counters({ matched: 3, busy: 1 }));
    m.observe({ namespace: 'shop', name: 'web' }, counters({ matched: 5 }));
    m.forget({ namespace: 'shop', name: 'podtap-capture-1' });
    const text = await m.registry.metrics();
    expect(text).not.toContain('podtap-capture-1');
    expect(text).toContain('policy="web"');
  });

  it('reports when a status last reached the API, how many sessions run and how many wait for one', async () => {
    const m = createAgentMetrics();
    m.setSessionSource(() => 3);
    m.setWaitingSource(() => 2);
    expect(await value(m.registry.metrics(), `${AGENT_PREFIX}last_report_timestamp_seconds`)).toBe(0);
    m.reported();
    const text = m.registry.metrics();
    expect(Math.abs((await value(text, `${AGENT_PREFIX}last_report_timestamp_seconds`))! - Date.now() / 1000)).toBeLessThan(5);
    expect(await value(text, `${AGENT_PREFIX}sessions`)).toBe(3);
    expect(await value(text, `${AGENT_PREFIX}sessions_waiting`)).toBe(2);
  });
});

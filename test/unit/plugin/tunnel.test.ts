import { describe, expect, it } from 'vitest';
import type { SniffPolicy } from '../../../src/api/index.ts';
import { tunnelCheck } from '../../../src/plugin/tunnel.ts';

const COLLECTOR = { namespace: 'podtap-system', service: 'podtap-collector' };
const STARTED = '2026-01-01T10:00:00Z';

function policy(over: { collector?: SniffPolicy['spec']['collector']; packets?: number; startTime?: string | undefined } = {}): SniffPolicy {
  return {
    apiVersion: 'podtap.io/v1alpha1', kind: 'SniffPolicy', metadata: { name: 'web', namespace: 'shop' },
    spec: { collector: over.collector ?? { service: { name: 'podtap-collector', namespace: 'podtap-system' } } },
    status: { packets: over.packets ?? 10, ...('startTime' in over ? (over.startTime ? { startTime: over.startTime } : {}) : { startTime: STARTED }) },
  } as SniffPolicy;
}
const counts = (packets: number | undefined, startTime = '2026-01-01T09:00:00Z') => ({
  startTime, policies: [{ namespace: 'other', name: 'web', packets: 999 }, ...(packets === undefined ? [] : [{ namespace: 'shop', name: 'web', packets }])],
});

describe('the tunnel check', () => {
  it.each([
    { description: 'all rebuilt', input: { p: policy(), c: counts(10) }, expected: 'ok' },
    { description: 'more rebuilt than last reported (the reports lag)', input: { p: policy(), c: counts(12) }, expected: 'ok' },
    { description: 'fewer rebuilt', input: { p: policy(), c: counts(7) }, expected: 'losing' },
    { description: 'none rebuilt: the tunnel does not arrive (another namespace\'s policy of the same name is not it)', input: { p: policy(), c: counts(undefined) }, expected: 'losing' },
    { description: 'nothing mirrored, nothing rebuilt', input: { p: policy({ packets: 0 }), c: counts(undefined) }, expected: 'ok' },
    { description: 'the collector started after the capture', input: { p: policy(), c: counts(3, '2026-01-01T11:00:00Z') }, expected: 'not compared' },
    { description: 'the capture has not started', input: { p: policy({ startTime: undefined }), c: counts(0) }, expected: 'not compared' },
    { description: 'another collector (an address)', input: { p: policy({ collector: { address: '198.18.9.2' } }), c: counts(0) }, expected: 'not compared' },
    { description: 'another collector (a Service elsewhere)', input: { p: policy({ collector: { service: { name: 'podtap-collector' } } }), c: counts(0) }, expected: 'not compared' },
    { description: 'a collector past its bound of counted policies, without this one', input: { p: policy(), c: { ...counts(undefined), policiesTruncated: true } }, expected: 'not compared' },
    { description: 'a collector past its bound, with this one', input: { p: policy(), c: { ...counts(7), policiesTruncated: true } }, expected: 'losing' },
    { description: 'an older collector without per-policy counts', input: { p: policy(), c: { startTime: '2026-01-01T09:00:00Z' } }, expected: 'not compared' },
  ])('$description: $expected', ({ input, expected }) => {
    expect(tunnelCheck(input.p, COLLECTOR, input.c).verdict).toBe(expected);
  });

  it('says how many are missing and where to look', () => {
    expect(tunnelCheck(policy(), COLLECTOR, counts(7)).line).toBe(
      'tunnel: LOSING — the agents mirrored 10 packets, the collector rebuilt 7: 3 left the nodes and never arrived whole (a NetworkPolicy or firewall on the tunnel port, an MTU that drops the pieces; see docs/troubleshooting.md)',
    );
  });
});

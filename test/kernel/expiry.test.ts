/**
 * The data plane's expiry (pt_config.expires_ns: the earlier of the policy's
 * deadline and the agent's lease), run on real packets with
 * BPF_PROG_TEST_RUN: before it the tap mirrors, from it on it mirrors nothing
 * and counts limitReached, with nobody in userspace to stop it.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { readCounters, writeConfig } from '../../src/datapath/bpftool.ts';
import { definesFor, loadTestObject, progRun, removePins, testConfig, testPinRoot } from '../helpers/bpf.ts';
import { buildFrame } from '../helpers/packets.ts';

const root = testPinRoot();
afterAll(() => removePins(root));

/** CLOCK_MONOTONIC now (bpf_ktime_get_ns's clock) plus @ms. */
const monoIn = (ms: number) => process.hrtime.bigint() + BigInt(ms) * 1_000_000n;

describe('the expiry is enforced by the tap itself (BPF_PROG_TEST_RUN)', () => {
  it.each([
    { description: 'no expiry (0): mirrored', input: () => 0n, expected: { matched: 1, limitReached: 0 } },
    { description: 'an expiry a minute ahead: mirrored', input: () => monoIn(60_000), expected: { matched: 1, limitReached: 0 } },
    { description: 'an expiry just passed: not mirrored, counted', input: () => monoIn(-1), expected: { matched: 1, limitReached: 1 } },
    { description: 'an expiry long passed (an agent dead for an hour)', input: () => monoIn(-3_600_000), expected: { matched: 1, limitReached: 1 } },
  ])('$description', async ({ input, expected }) => {
    const obj = await loadTestObject(definesFor(testConfig()), root);
    // capture_ifindex 0: a mirrored packet's clone fails (cloneError); an expired one never gets that far
    await writeConfig(obj.maps, { enabled: true, captureIfindex: 0, instance: 1, routeIfindex: 0, src: '198.18.200.1', dst: '198.18.200.2', expiresNs: input() });
    const before = await readCounters(obj.maps);
    expect(await progRun(obj.progs.pt_tap_ingress.path, buildFrame({ src: '198.18.1.2', dst: '198.18.2.2', proto: 'TCP' }))).toBe(-1);
    const after = await readCounters(obj.maps);
    const d = (r: 'matched' | 'limitReached' | 'cloneError') => after[r].packets - before[r].packets;
    expect({ matched: d('matched'), limitReached: d('limitReached') }).toEqual(expected);
    // only what was admitted was cloned
    expect(d('cloneError')).toBe(1 - expected.limitReached);
  });
});

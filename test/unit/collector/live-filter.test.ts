/**
 * The live stream's namespace filter is the reader's authorization
 * (src/collector/http.ts): which interfaces a stream filtered to a namespace
 * may carry.
 */
import { describe, expect, it } from 'vitest';
import { matchesFilter } from '../../../src/collector/live.ts';
import type { Iface } from '../../../src/collector/router.ts';

const iface = (policy: string | null, pod: string | null): Iface => ({
  uid: 1, name: 'x', description: '', snaplen: 0, capture: policy ? `${policy}_p` : 'unassigned',
  policy: policy ? { namespace: policy, name: 'p' } : null,
  pod: pod ? { namespace: pod, name: 'pod' } : null,
});

describe('a stream filtered to namespace team-a', () => {
  it.each([
    { description: 'team-a\'s policy, team-a\'s pod', input: iface('team-a', 'team-a'), expected: true },
    { description: 'team-a\'s policy, an interface without a pod', input: iface('team-a', null), expected: true },
    { description: 'team-b\'s policy, team-b\'s pod', input: iface('team-b', 'team-b'), expected: false },
    { description: 'team-b\'s policy announcing a pod of team-a', input: iface('team-b', 'team-a'), expected: false },
    { description: 'team-a\'s policy announcing a pod of team-b', input: iface('team-a', 'team-b'), expected: false },
    { description: 'no policy, a pod of team-a (filed as unassigned: readers of every namespace only)', input: iface(null, 'team-a'), expected: false },
    { description: 'no policy, no pod (an unannounced interface)', input: iface(null, null), expected: false },
  ])('$description: $expected', ({ input, expected }) => {
    expect(matchesFilter({ namespace: 'team-a' }, input)).toBe(expected);
  });
});

import { describe, expect, it } from 'vitest';
import { describeForeign, foreignOf, type ForeignProgram } from '../../../src/agent/foreign.ts';
import type { Finding } from '../../../src/datapath/index.ts';

const first = (hook: 'ingress' | 'egress', program: string): Finding => ({
  check: `interface veth1 ${hook}`, severity: 'warn', hook, program, message: `${program} at preference 1 runs before podtap's (attached at preference 2)`,
});

describe('the agent\'s check for programs before podtap\'s', () => {
  it.each([
    {
      description: 'a program first on a tapped hook is reported',
      input: { findings: [first('egress', 'BPF program cil_to_container')], hooks: ['egress'] as const },
      expected: [{ dev: 'veth1', pod: 'web-1', hook: 'egress', message: "BPF program cil_to_container at preference 1 runs before podtap's (attached at preference 2)" }],
    },
    // a capture of policyTypes [Ingress] taps egress only: a program on ingress takes nothing from it
    { description: 'one on a hook the capture does not tap is not', input: { findings: [first('ingress', 'BPF program cil_from_container')], hooks: ['egress'] as const }, expected: [] },
    {
      description: 'podtap first, or a finding without a hook, is not',
      input: {
        findings: [{ check: 'interface veth1 egress', severity: 'ok', hook: 'egress', message: "podtap's filter runs first (preference 1)" }, { check: 'interface veth1', severity: 'ok', message: 'nothing runs before podtap' }] as Finding[],
        hooks: ['ingress', 'egress'] as const,
      },
      expected: [],
    },
  ])('$description', ({ input, expected }) => {
    expect(foreignOf('veth1', 'web-1', input.findings, input.hooks)).toEqual(expected);
  });

  it.each([
    {
      description: 'one program: interface, pod, hook, program and the consequence',
      input: [{ dev: 'veth1', pod: 'web-1', hook: 'egress', message: 'tcx program cil_to_container runs before every tc filter, podtap\'s included' }] as ForeignProgram[],
      expected: "veth1 (pod web-1) egress: tcx program cil_to_container runs before every tc filter, podtap's included; packets it redirects or drops are not captured",
    },
    {
      description: 'many: the first three and how many more',
      input: Array.from({ length: 5 }, (_, i) => ({ dev: `veth${i}`, hook: 'ingress', message: 'm' })) as ForeignProgram[],
      expected: 'veth0 ingress: m; veth1 ingress: m; veth2 ingress: m; and 2 more; packets it redirects or drops are not captured',
    },
  ])('the message: $description', ({ input, expected }) => {
    expect(describeForeign(input)).toBe(expected);
  });
});

import { describe, expect, it } from 'vitest';
import {
  ConditionReason,
  ConditionSchema,
  ConditionType,
  ReasonHints,
  findCondition,
  isConditionTrue,
  removeCondition,
  rfc3339,
  setCondition,
  type Condition,
  type ConditionUpdate,
} from '../../../src/api/conditions.ts';

const T0 = '2025-01-02T03:00:00Z';
const T1 = '2025-01-02T04:00:00Z';
const now = new Date(T1);

const ready = (status: Condition['status'], reason: string, extra: Partial<Condition> = {}): Condition => ({
  type: 'Ready',
  status,
  reason,
  message: '',
  lastTransitionTime: T0,
  ...extra,
});

describe('setCondition', () => {
  const cases: { description: string; input: { conditions: Condition[] | undefined; cond: ConditionUpdate }; expected: Condition[] }[] = [
    {
      description: 'adds a new condition stamped now',
      input: { conditions: undefined, cond: { type: 'Ready', status: 'False', reason: 'Attaching', message: 'compiling' } },
      expected: [{ type: 'Ready', status: 'False', reason: 'Attaching', message: 'compiling', lastTransitionTime: T1 }],
    },
    {
      description: 'keeps lastTransitionTime when the status does not change',
      input: { conditions: [ready('False', 'Attaching')], cond: { type: 'Ready', status: 'False', reason: 'CollectorUnreachable', message: 'no route', observedGeneration: 2 } },
      expected: [ready('False', 'CollectorUnreachable', { message: 'no route', observedGeneration: 2 })],
    },
    {
      description: 'moves lastTransitionTime when the status changes',
      input: { conditions: [ready('False', 'Attaching')], cond: { type: 'Ready', status: 'True', reason: 'Attached', message: '' } },
      expected: [ready('True', 'Attached', { lastTransitionTime: T1 })],
    },
    {
      description: "takes the caller's lastTransitionTime on a change",
      input: { conditions: [ready('False', 'Attaching')], cond: { type: 'Ready', status: 'True', reason: 'Attached', message: '', lastTransitionTime: '2025-01-02T03:30:00Z' } },
      expected: [ready('True', 'Attached', { lastTransitionTime: '2025-01-02T03:30:00Z' })],
    },
    {
      description: "ignores the caller's lastTransitionTime without a change",
      input: { conditions: [ready('True', 'Attached')], cond: { type: 'Ready', status: 'True', reason: 'Attached', message: '', lastTransitionTime: T1 } },
      expected: [ready('True', 'Attached')],
    },
    {
      description: 'keeps observedGeneration when the update has none',
      input: { conditions: [ready('True', 'Attached', { observedGeneration: 4 })], cond: { type: 'Ready', status: 'True', reason: 'Attached', message: 'ok' } },
      expected: [ready('True', 'Attached', { observedGeneration: 4, message: 'ok' })],
    },
    {
      description: 'leaves other types and their order alone, appends a new type',
      input: {
        conditions: [{ ...ready('True', 'Attached'), type: 'Progressing' }, ready('True', 'Attached')],
        cond: { type: 'Degraded', status: 'False', reason: 'AsExpected', message: '' },
      },
      expected: [
        { ...ready('True', 'Attached'), type: 'Progressing' },
        ready('True', 'Attached'),
        { type: 'Degraded', status: 'False', reason: 'AsExpected', message: '', lastTransitionTime: T1 },
      ],
    },
  ];
  it.each(cases)('$description', ({ input, expected }) => {
    const before = structuredClone(input.conditions);
    expect(setCondition(input.conditions, input.cond, now)).toEqual(expected);
    expect(input.conditions).toEqual(before); // not modified in place
  });

  it('accepts now as a string', () => {
    expect(setCondition([], { type: 'Completed', status: 'True', reason: 'LimitReached', message: '' }, T0)[0]!.lastTransitionTime).toBe(T0);
  });
});

describe('condition helpers', () => {
  const list = [ready('True', 'Attached'), { ...ready('False', 'AsExpected'), type: 'Degraded' }];
  it.each([
    { description: 'find Ready', input: () => findCondition(list, 'Ready')?.reason, expected: 'Attached' },
    { description: 'find missing', input: () => findCondition(list, 'Completed'), expected: undefined },
    { description: 'Ready is true', input: () => isConditionTrue(list, 'Ready'), expected: true },
    { description: 'Degraded is not', input: () => isConditionTrue(list, 'Degraded'), expected: false },
    { description: 'on undefined', input: () => isConditionTrue(undefined, 'Ready'), expected: false },
    { description: 'remove Degraded', input: () => removeCondition(list, 'Degraded').map((c) => c.type), expected: ['Ready'] },
    { description: 'rfc3339 drops milliseconds', input: () => rfc3339(new Date('2025-01-02T03:04:05.678Z')), expected: '2025-01-02T03:04:05Z' },
  ])('$description', ({ input, expected }) => {
    expect(input()).toEqual(expected);
  });

  it('names the required types and reasons, each a valid CamelCase reason with a hint', () => {
    expect(Object.values(ConditionType)).toEqual(['Ready', 'Progressing', 'Degraded', 'Completed']);
    const required = [
      'Attached', 'Attaching', 'NoPodsSelected', 'NoNodesMatched', 'CollectorUnreachable', 'CollectorNotFound', 'VerifierRejected',
      'KernelUnsupported', 'CompileFailed', 'InterfaceNotFound', 'LimitReached', 'InvalidSpec', 'AgentNotReporting', 'PartiallyAttached',
    ];
    expect(Object.keys(ConditionReason)).toEqual(expect.arrayContaining(required));
    for (const reason of Object.values(ConditionReason)) {
      expect(ConditionSchema.safeParse(ready('False', reason)).success, reason).toBe(true);
      expect(ReasonHints[reason].length).toBeGreaterThan(10);
    }
  });

  it.each([
    { description: 'a reason with a space', input: ready('False', 'No pods'), expected: false },
    { description: 'status true in lower case', input: { ...ready('True', 'Attached'), status: 'true' }, expected: false },
    { description: 'a time without zone', input: ready('True', 'Attached', { lastTransitionTime: '2025-01-02T03:00:00' }), expected: false },
    { description: 'a time with an offset', input: ready('True', 'Attached', { lastTransitionTime: '2025-01-02T03:00:00+02:00' }), expected: true },
  ])('ConditionSchema: $description', ({ input, expected }) => {
    expect(ConditionSchema.safeParse(input).success).toBe(expected);
  });
});

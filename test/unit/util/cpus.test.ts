import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cpuLimitFromCpuMax, usableCpus } from '../../../src/util/cpus.ts';

describe('usable CPUs', () => {
  it.each([
    { description: 'no limit', input: 'max 100000\n', expected: undefined },
    { description: 'two CPUs', input: '200000 100000\n', expected: 2 },
    { description: 'half a CPU rounds up to one', input: '50000 100000', expected: 1 },
    { description: '1.5 CPUs rounds up to two', input: '150000 100000', expected: 2 },
    { description: 'other period', input: '400000 50000', expected: 8 },
    { description: 'garbage', input: 'what', expected: undefined },
    { description: 'empty', input: '', expected: undefined },
  ])('cpu.max: $description', ({ input, expected }) => {
    expect(cpuLimitFromCpuMax(input)).toBe(expected);
  });

  it('takes the smaller of the affinity and the cgroup limit', () => {
    const dir = mkdtempSync(join(tmpdir(), 'podtap-cpus-'));
    const file = join(dir, 'cpu.max');
    writeFileSync(file, '100000 100000\n');
    expect(usableCpus(file)).toBe(1);
    writeFileSync(file, `${(availableParallelism() + 8) * 100000} 100000\n`);
    expect(usableCpus(file)).toBe(availableParallelism());
    expect(usableCpus(join(dir, 'missing'))).toBe(availableParallelism());
    rmSync(dir, { recursive: true });
  });
});

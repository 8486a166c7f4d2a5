// The agent's node-wide limits on the command line: the node's mirror budget
// (--node-max-packets-per-second, --node-max-bytes-per-second) and the cap on
// capture sessions (--max-sessions), each refused with its name when it is not
// a whole number the data plane can hold; and how often the kernel is checked
// (--check-interval).
import { describe, expect, it } from 'vitest';
import { DEFAULT_CHECK_MS } from '../../../src/agent/agent.ts';
import { MAX_SESSIONS, parseAgentArgs } from '../../../src/agent/cli.ts';
import { RateLimitSchema } from '../../../src/api/index.ts';
import { MAX_RATE_PER_SECOND } from '../../../src/datapath/index.ts';

describe('podtap agent flags', () => {
  it.each([
    { description: 'no flag: no node budget and no session cap, the kernel checked every minute', input: [], expected: { nodeBudget: { packetsPerSecond: 0, bytesPerSecond: 0 }, maxSessions: 0, checkIntervalMs: DEFAULT_CHECK_MS } },
    { description: 'a check interval', input: ['--check-interval', '2.5'], expected: { checkIntervalMs: 2500 } },
    {
      description: 'both budgets and a cap',
      input: ['--node-max-packets-per-second', '50000', '--node-max-bytes-per-second', '125000000', '--max-sessions', '32'],
      expected: { nodeBudget: { packetsPerSecond: 50000, bytesPerSecond: 125000000 }, maxSessions: 32 },
    },
    { description: 'the = form', input: ['--node-max-packets-per-second=7', '--max-sessions=1'], expected: { nodeBudget: { packetsPerSecond: 7, bytesPerSecond: 0 }, maxSessions: 1 } },
    {
      description: 'the highest rate a bucket holds',
      input: ['--node-max-bytes-per-second', String(MAX_RATE_PER_SECOND)],
      expected: { nodeBudget: { packetsPerSecond: 0, bytesPerSecond: MAX_RATE_PER_SECOND }, maxSessions: 0 },
    },
  ])('$description', ({ input, expected }) => {
    expect(parseAgentArgs(input)).toMatchObject(expected);
  });

  it.each([
    { description: 'a fraction', input: ['--node-max-packets-per-second', '1.5'], expected: '--node-max-packets-per-second: expected a whole number from 0 (none) to 10000000000, got "1.5"' },
    { description: 'an exponent', input: ['--node-max-bytes-per-second', '1e9'], expected: '--node-max-bytes-per-second: expected a whole number from 0 (none) to 10000000000, got "1e9"' },
    { description: 'a negative rate', input: ['--node-max-packets-per-second=-1'], expected: 'got "-1"' },
    { description: 'a rate whose one second of tokens overflows the bucket', input: ['--node-max-bytes-per-second', String(MAX_RATE_PER_SECOND + 1)], expected: 'got "10000000001"' },
    { description: 'words', input: ['--max-sessions', 'many'], expected: `--max-sessions: expected a whole number from 0 (none) to ${MAX_SESSIONS}, got "many"` },
    { description: 'a cap past the most a node takes', input: ['--max-sessions', String(MAX_SESSIONS + 1)], expected: `got "${MAX_SESSIONS + 1}"` },
    { description: 'an empty value', input: ['--max-sessions='], expected: 'got ""' },
    { description: 'a check interval of 0', input: ['--check-interval', '0'], expected: '--check-interval must be a positive number of seconds (got "0")' },
    { description: 'a check interval in words', input: ['--check-interval=often'], expected: '(got "often")' },
  ])('refuses $description, naming the flag', ({ input, expected }) => {
    expect(() => parseAgentArgs(input)).toThrow(expected);
  });

  it('--help is no error', () => {
    expect(parseAgentArgs(['--help'])).toBeNull();
  });

  it("the node's bound is the API's rateLimit bound (one token bucket arithmetic)", () => {
    expect(RateLimitSchema.safeParse({ packetsPerSecond: MAX_RATE_PER_SECOND }).success).toBe(true);
    expect(RateLimitSchema.safeParse({ packetsPerSecond: MAX_RATE_PER_SECOND + 1 }).success).toBe(false);
  });
});

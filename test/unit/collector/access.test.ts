/**
 * The collector's access control (src/collector/access.ts) apart from the API
 * server: what it asks, how often, and what it does when the API server is
 * slow or away. The answers themselves come from the real kube-apiserver in
 * test/k8s/collector-access.test.ts; here a Reviewer records the questions.
 */
import { describe, expect, it } from 'vitest';
import { AccessDenied, makeAccess, type AccessScope, type KubeUser, type Reviewer } from '../../../src/collector/access.ts';
import { silentLogger } from '../../../src/util/log.ts';

const INSTALL = 'install-api-token';

function recorder(opts: { users?: Record<string, string>; grants?: string[]; hang?: boolean; fail?: boolean } = {}) {
  const asked = { tokens: [] as string[], reviews: [] as string[] };
  const reviewer: Reviewer = {
    async tokenReview(token) {
      asked.tokens.push(token);
      if (opts.hang) await new Promise(() => undefined);
      if (opts.fail) throw new Error('connection refused');
      const u = opts.users?.[token];
      return u ? { user: { username: u, groups: ['system:authenticated'] } } : { error: 'invalid bearer token' };
    },
    async subjectAccessReview(user: KubeUser, scope: AccessScope) {
      const key = `${user.username}@${scope.namespace ?? '*'}/${scope.policy ?? '*'}`;
      asked.reviews.push(key);
      return (opts.grants ?? []).includes(key);
    },
  };
  return { reviewer, asked };
}

function clock() {
  let t = 1_000_000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

const bearer = (t: string): string => `Bearer ${t}`;

async function denial(p: Promise<unknown>): Promise<number> {
  try {
    await p;
  } catch (err) {
    if (err instanceof AccessDenied) return err.status;
    throw err;
  }
  return 0;
}

describe('authentication', () => {
  it.each([
    { description: 'no header', input: undefined, expected: 401 },
    { description: 'not a bearer token', input: 'Basic YWxpY2U6cHc=', expected: 401 },
    { description: 'an empty bearer', input: 'Bearer ', expected: 401 },
    { description: 'two tokens', input: 'Bearer a b', expected: 401 },
    { description: 'a token longer than any real one', input: `Bearer ${'x'.repeat(8193)}`, expected: 401 },
    { description: 'a token the API server refuses', input: 'Bearer nobody', expected: 401 },
  ])('$description: $expected, nothing else asked', async ({ input, expected }) => {
    const { reviewer, asked } = recorder({ users: { 'alice-token': 'alice' } });
    const a = makeAccess({ reviewer, logger: silentLogger, installToken: { check: (h) => h === bearer(INSTALL) } });
    expect(await denial(a.authenticate(input))).toBe(expected);
    expect(asked.tokens).toEqual(input === 'Bearer nobody' ? ['nobody'] : []);
  });

  it('the install token reads everything without asking the API server', async () => {
    const { reviewer, asked } = recorder();
    const a = makeAccess({ reviewer, logger: silentLogger, installToken: { check: (h) => h === bearer(INSTALL) } });
    const id = await a.authenticate(bearer(INSTALL));
    expect(id.kind).toBe('install-token');
    expect(await a.allowed(id, {})).toBe(true);
    expect(asked).toEqual({ tokens: [], reviews: [] });
  });

  it('without a reviewer, only the install token passes', async () => {
    const a = makeAccess({ logger: silentLogger, installToken: { check: (h) => h === bearer(INSTALL) } });
    expect(await denial(a.authenticate(bearer('alice-token')))).toBe(401);
  });

  it('with neither, nothing is authenticated (the collector outside Kubernetes, as before)', async () => {
    const a = makeAccess({ logger: silentLogger });
    expect(a.enabled).toBe(false);
    expect(await a.allowed(await a.authenticate(undefined), { namespace: 'x' })).toBe(true);
  });

  it('an answer is reused for cacheMs, a refusal for negativeCacheMs', async () => {
    const c = clock();
    const { reviewer, asked } = recorder({ users: { 'alice-token': 'alice' } });
    const a = makeAccess({ reviewer, logger: silentLogger, now: c.now, cacheMs: 10_000, negativeCacheMs: 2_000 });
    for (let i = 0; i < 5; i++) await a.authenticate(bearer('alice-token'));
    for (let i = 0; i < 5; i++) await denial(a.authenticate(bearer('mallory')));
    expect(asked.tokens).toEqual(['alice-token', 'mallory']);
    c.advance(2_001);
    await a.authenticate(bearer('alice-token'));
    await denial(a.authenticate(bearer('mallory')));
    expect(asked.tokens).toEqual(['alice-token', 'mallory', 'mallory']);
    c.advance(8_000);
    await a.authenticate(bearer('alice-token'));
    expect(asked.tokens).toEqual(['alice-token', 'mallory', 'mallory', 'alice-token']);
  });

  it('a flood of made-up tokens: at most maxInFlight reviews at once, the rest 503', async () => {
    const { reviewer, asked } = recorder({ hang: true });
    const a = makeAccess({ reviewer, logger: silentLogger, maxInFlight: 4 });
    const pending = Array.from({ length: 4 }, (_, i) => a.authenticate(bearer(`t${i}`)));
    for (const p of pending) p.catch(() => undefined);
    expect(await denial(a.authenticate(bearer('t-more')))).toBe(503);
    expect(asked.tokens).toHaveLength(4);
  });

  it('the API server away: 503, and the next request asks again (a failure is not kept)', async () => {
    const { reviewer, asked } = recorder({ fail: true });
    const a = makeAccess({ reviewer, logger: silentLogger });
    expect(await denial(a.authenticate(bearer('alice-token')))).toBe(503);
    expect(await denial(a.authenticate(bearer('alice-token')))).toBe(503);
    expect(asked.tokens).toHaveLength(2);
  });
});

describe('authorization', () => {
  it('asks per user, namespace and policy, and reuses each answer', async () => {
    const { reviewer, asked } = recorder({ users: { 'alice-token': 'alice' }, grants: ['alice@team-a/*'] });
    const a = makeAccess({ reviewer, logger: silentLogger });
    const id = await a.authenticate(bearer('alice-token'));
    const table = [
      { input: { namespace: 'team-a' }, expected: true },
      { input: { namespace: 'team-b' }, expected: false },
      { input: { namespace: 'team-a', policy: 'web' }, expected: false },
      { input: {}, expected: false },
      { input: { namespace: 'team-a' }, expected: true },
    ];
    for (const { input, expected } of table) expect(await a.allowed(id, input)).toBe(expected);
    expect(asked.reviews).toEqual(['alice@team-a/*', 'alice@team-b/*', 'alice@team-a/web', 'alice@*/*']);
  });
});

/** The controller's and agent's HTTP endpoint: /healthz (liveness) and /readyz (readiness) answer as the process says. */
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { startHttp } from '../../../src/k8s/http.ts';
import { silentLogger } from '../../../src/util/log.ts';

describe('health endpoints', () => {
  const cases: { description: string; input: { notReady?: string; notLive?: string }; expected: { healthz: number; readyz: number; body?: RegExp } }[] = [
    { description: 'alive and ready', input: {}, expected: { healthz: 200, readyz: 200 } },
    { description: 'alive, not ready', input: { notReady: 'assignments not synced' }, expected: { healthz: 200, readyz: 503 } },
    { description: 'not live (the agent lost its pin root): the kubelet restarts it', input: { notLive: 'the pin root /x was removed' }, expected: { healthz: 503, readyz: 200, body: /not live: the pin root \/x was removed/ } },
  ];
  it.each(cases)('$description', async ({ input, expected }) => {
    const http = await startHttp('127.0.0.1:0', { registry: new Registry(), notReady: () => input.notReady, ...(input.notLive ? { notLive: () => input.notLive } : {}) }, silentLogger);
    try {
      const health = await fetch(`http://${http.address}/healthz`);
      expect(health.status).toBe(expected.healthz);
      if (expected.body) expect(await health.text()).toMatch(expected.body);
      expect((await fetch(`http://${http.address}/readyz`)).status).toBe(expected.readyz);
    } finally {
      await http.close();
    }
  });
});

/**
 * The announcer towards a collector that does not answer: every send after
 * the first brings back the ICMP port unreachable as a socket error. Those are
 * one warning, not one per announcement; the repeats stay at debug. (Loopback
 * of the private network namespace the suite runs this project in.)
 */
import { createSocket } from 'node:dgram';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { Announcer, SOCKET_ERROR_WARN_MS } from '../../../src/capture/announcer.ts';

/** A UDP port nobody listens on: bound once to learn a free one, then closed. */
async function closedPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  const { port } = s.address();
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

describe('announcer', () => {
  it(`warns once about an unreachable collector per ${SOCKET_ERROR_WARN_MS / 1000} s, the repeats at debug`, async () => {
    const lines: { level: number; msg: string }[] = [];
    const logger = pino({ level: 'debug' }, new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(JSON.parse(chunk.toString()) as { level: number; msg: string });
        done();
      },
    }));
    const a = new Announcer({
      collector: { address: '127.0.0.1', port: await closedPort() },
      node: 'node-a', sender: 'agent', tunnel: 'Geneve', instance: () => 1, policy: null,
      interfaces: async () => [], intervalMs: 20, logger,
    });
    await a.start();
    const errors = () => lines.filter((l) => l.msg.startsWith('announcement socket error'));
    try {
      for (let i = 0; i < 100 && errors().length < 5; i++) await new Promise((r) => setTimeout(r, 20));
    } finally {
      await a.stop();
    }
    expect(errors().length).toBeGreaterThanOrEqual(5);
    expect(errors().filter((l) => l.level === 40)).toHaveLength(1); // warn
    expect(errors().filter((l) => l.level === 20).length).toBe(errors().length - 1); // debug
  });
});

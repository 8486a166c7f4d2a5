/**
 * Node 24 for tests that run what a user installs: the repository's own
 * (npm's `node` package, installed by scripts/setup.sh), first on a PATH that
 * otherwise holds only the system's directories.
 */
import { realpath } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { ROOT } from './render.ts';

export async function node24Path(): Promise<string> {
  let bin: string;
  try {
    bin = dirname(await realpath(join(ROOT, 'node_modules/.bin/node')));
  } catch (err) {
    throw new Error('no Node 24 in node_modules/.bin/node: run scripts/setup.sh', { cause: err });
  }
  return `${bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`;
}

/** A TCP port free on 127.0.0.1 a moment ago (UDP at the same number is almost always free too). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

// The installed CLI (src/cli/main.ts, what the image and npm ship) has the
// product's commands only; a clone's (tools/dev/main.ts) adds the development
// commands, and the installed one says where to find them.
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '../../..');
const NODE = join(ROOT, 'node_modules/.bin/node');
const INSTALLED = join(ROOT, 'src/cli/main.ts');
const CLONE = join(ROOT, 'tools/dev/main.ts');
const PRODUCT = ['sniff', 'collector', 'controller', 'agent', 'features', 'doctor', 'crds', 'cleanup'];
const DEVELOPMENT = ['devcluster', 'demo'];

/** The command names `--help` lists. */
async function listed(entry: string): Promise<string[]> {
  const r = await execa(NODE, [entry, '--help']);
  return [...r.stdout.matchAll(/^ {2}(\S+) {2,}/gm)].map((m) => m[1]!);
}

describe('podtap commands', () => {
  it.each([
    { description: 'the installed CLI lists the product commands only', input: INSTALLED, expected: PRODUCT },
    { description: "a clone's CLI lists them and the development commands", input: CLONE, expected: [...PRODUCT, ...DEVELOPMENT] },
  ])('$description', async ({ input, expected }) => {
    expect(await listed(input)).toEqual(expected);
  });

  it.each([
    { description: 'demo', input: 'demo', expected: 'run scripts/demo.sh' },
    { description: 'devcluster', input: 'devcluster', expected: 'run scripts/podtap devcluster' },
  ])('the installed CLI refuses $description with where to run it', async ({ input, expected }) => {
    const r = await execa(NODE, [INSTALLED, input, '--help'], { reject: false });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('a development command of a clone of the repository');
    expect(r.stderr).toContain(expected);
  });
});

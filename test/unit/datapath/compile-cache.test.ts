/** The compile cache on the host stays bounded: tenants can make configurations without end. */
import { mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { pruneCache } from '../../../src/datapath/compile.ts';

const NOW = Date.parse('2026-01-01T00:00:00Z');
let dir = '';
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Files named @name, last used @ageMs before NOW. */
async function cache(files: { name: string; ageMs: number }[]): Promise<string> {
  dir = await mkdtemp(join(tmpdir(), 'podtap-cache-'));
  for (const f of files) {
    const p = join(dir, f.name);
    await writeFile(p, 'x');
    const t = new Date(NOW - f.ageMs);
    await utimes(p, t, t);
  }
  return dir;
}

describe('pruneCache', () => {
  it.each([
    {
      description: 'keeps the most recently used, removes the rest',
      input: { files: [{ name: 'podtap-aa.o', ageMs: 3000 }, { name: 'podtap-bb.o', ageMs: 1000 }, { name: 'podtap-cc.o', ageMs: 2000 }], keep: 2, protect: undefined },
      expected: ['podtap-bb.o', 'podtap-cc.o'],
    },
    {
      description: 'never the object just compiled, even the oldest',
      input: { files: [{ name: 'podtap-aa.o', ageMs: 9000 }, { name: 'podtap-bb.o', ageMs: 1000 }], keep: 1, protect: 'podtap-aa.o' },
      expected: ['podtap-aa.o'],
    },
    {
      description: "a crashed compile's temporary file older than ten minutes goes, a fresh one stays",
      input: { files: [{ name: 'podtap-aa.o.123.tmp', ageMs: 11 * 60_000 }, { name: 'podtap-bb.o.456.tmp', ageMs: 1000 }], keep: 64, protect: undefined },
      expected: ['podtap-bb.o.456.tmp'],
    },
    {
      description: "what is not podtap's stays",
      input: { files: [{ name: 'notes.txt', ageMs: 99_999_999 }, { name: 'podtap-aa.o', ageMs: 5 }], keep: 0, protect: undefined },
      expected: ['notes.txt'],
    },
  ])('$description', async ({ input, expected }) => {
    const d = await cache(input.files);
    await pruneCache(d, { keep: input.keep, now: NOW, ...(input.protect ? { protect: join(d, input.protect) } : {}) });
    expect((await readdir(d)).sort()).toEqual(expected);
  });

  it('a missing directory is nothing to prune', async () => {
    await expect(pruneCache(join(tmpdir(), 'podtap-no-such-cache'), { keep: 1 })).resolves.toEqual([]);
  });
});

/**
 * scripts/lib/debian-mirror.sh reads the Debian archive from the machine's apt
 * sources, so no mirror host is written into the repository: every apt
 * source layout Debian uses, the override, and a clear failure.
 */
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';

const SCRIPT = new URL('../../../scripts/lib/debian-mirror.sh', import.meta.url).pathname;
const dirs: string[] = [];
afterAll(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }); });

async function aptEtc(files: Record<string, string>): Promise<string> {
  const etc = await mkdtemp(join(tmpdir(), 'podtap-apt-'));
  dirs.push(etc);
  await mkdir(join(etc, 'sources.list.d'));
  for (const [name, text] of Object.entries(files)) await writeFile(join(etc, name), text);
  return etc;
}

const cases: { description: string; files: Record<string, string>; env?: Record<string, string>; arg?: string; expected: string | RegExp }[] = [
  {
    description: 'deb822 sources, archive first',
    files: { 'sources.list.d/debian.sources': 'Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n' },
    expected: 'http://mirror.example/debian',
  },
  {
    description: 'deb822 sources, security archive asked for',
    files: { 'sources.list.d/debian.sources': 'Types: deb\nURIs: https://m.example/debian/\nSuites: bookworm\n' },
    arg: 'security',
    expected: 'https://m.example/debian-security',
  },
  {
    description: 'one-line sources.list with options, security line first',
    files: { 'sources.list': 'deb [arch=amd64] http://s.example/debian-security bookworm-security main\ndeb [signed-by=/k.gpg] http://l.example/debian bookworm main\n' },
    expected: 'http://l.example/debian',
  },
  {
    description: 'a non-Debian source is not taken for the archive',
    files: { 'sources.list.d/other.list': 'deb http://packages.example/apt stable main\n', 'sources.list.d/debian.sources': 'URIs: http://d.example/debian\n' },
    expected: 'http://d.example/debian',
  },
  {
    description: 'the override wins',
    files: { 'sources.list.d/debian.sources': 'URIs: http://mirror.example/debian\n' },
    env: { PODTAP_DEBIAN_MIRROR: 'http://override.example/debian' },
    expected: 'http://override.example/debian',
  },
  {
    description: 'no Debian archive: a clear error naming the override',
    files: { 'sources.list.d/other.list': 'deb http://packages.example/apt stable main\n' },
    expected: /no Debian archive .* set PODTAP_DEBIAN_MIRROR/,
  },
  {
    description: 'an unknown archive name is refused',
    files: { 'sources.list.d/debian.sources': 'URIs: http://mirror.example/debian\n' },
    arg: 'backports',
    expected: /unknown archive 'backports'/,
  },
];

describe('debian-mirror.sh', () => {
  it.each(cases)('$description', async ({ files, env, arg, expected }) => {
    const etc = await aptEtc(files);
    const r = await execa(SCRIPT, arg ? [arg] : [], { reject: false, env: { PODTAP_APT_ETC: etc, PODTAP_DEBIAN_MIRROR: '', ...env } });
    if (typeof expected === 'string') {
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout).toBe(expected);
    } else {
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toMatch(expected);
    }
  });
});

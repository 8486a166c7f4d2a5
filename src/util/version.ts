/**
 * podtap's version: package.json's, the one source. Read once, when first
 * asked (`podtap --version`, the collector's pcapng section headers). The
 * self-contained kubectl plugin (scripts/build-plugin.ts) has no package.json
 * beside it, so its bundler writes the version in as PODTAP_VERSION.
 */
import { readFileSync } from 'node:fs';

declare const PODTAP_VERSION: string | undefined;

let cached: string | undefined;

export function podtapVersion(): string {
  if (typeof PODTAP_VERSION === 'string') return PODTAP_VERSION;
  // src/util/ and dist/util/ are both two levels below the package root
  cached ??= (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  return cached;
}

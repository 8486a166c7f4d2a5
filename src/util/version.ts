/**
 * podtap's version: package.json's, the one source. Read once, when first
 * asked (`podtap --version`, the collector's pcapng section headers).
 */
import { readFileSync } from 'node:fs';

let cached: string | undefined;

export function podtapVersion(): string {
  cached ??= (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  return cached;
}

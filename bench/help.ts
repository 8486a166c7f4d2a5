/**
 * `--help` of a benchmark: its header comment, which says what it measures
 * and how to run it (one text, not a second copy that drifts).
 */
import { readFileSync } from 'node:fs';

/** Print @script's header comment and exit when --help or -h is among the arguments. */
export function helpFromHeader(script: string): void {
  if (!process.argv.slice(2).some((a) => a === '--help' || a === '-h')) return;
  const header = /\/\*\*([\s\S]*?)\*\//.exec(readFileSync(script, 'utf8'))?.[1] ?? '';
  console.log(header.split('\n').map((l) => l.replace(/^\s*\* ?/, '')).join('\n').trim());
  process.exit(0);
}

/**
 * The values of C constant expressions as clang computes them from the BPF
 * headers (bpf/include), for a given set of -D flags: the expressions go into
 * a constant array, clang compiles it for the BPF target to LLVM IR, and the
 * array's initializer is read back. So a test compares TypeScript with what
 * the data plane is really compiled with, never with a hand-typed copy.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { BPF_DIR, multiarchInclude } from '../../src/datapath/compile.ts';

/** Each expression's value (as a number: every podtap constant is below 2^53). */
export async function cConstants(expressions: string[], defines: string[] = [], headers = ['consts.h', 'wire.h']): Promise<number[]> {
  const dir = await mkdtemp(join(tmpdir(), 'podtap-cconst-'));
  try {
    const src = join(dir, 'values.c');
    await writeFile(
      src,
      [
        ...headers.map((h) => `#include "${h}"`),
        `const unsigned long long pt_values[] = {\n${expressions.map((e) => `  (unsigned long long)(${e}),`).join('\n')}\n};`,
        '',
      ].join('\n'),
    );
    const r = await execa('clang', ['-target', 'bpf', '-S', '-emit-llvm', '-O0', `-I${join(BPF_DIR, 'include')}`, ...multiarchInclude(), ...defines, '-o', '-', src], {
      reject: false,
    });
    if (r.exitCode !== 0) throw new Error(`clang could not evaluate the constants (is clang installed? scripts/setup.sh):\n${r.stderr}`);
    const m = /@pt_values = [^[]*\[\d+ x i64\] \[([^\]]*)\]/.exec(r.stdout);
    if (!m) throw new Error(`no pt_values array in clang's output:\n${r.stdout.slice(0, 2000)}`);
    const values = m[1]!.split(',').map((v) => Number(v.trim().replace(/^i64 /, '')));
    if (values.length !== expressions.length || values.some((v) => !Number.isSafeInteger(v))) throw new Error(`cannot read pt_values: ${m[1]}`);
    return values;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * `npm run gen`: write the CRDs generated from src/api into
 * charts/podtap/crds/. The content comes from crdFiles() so the drift test
 * compares against exactly what this script writes.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crdFiles } from '../src/api/crd.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
for (const f of crdFiles()) {
  const target = join(root, f.path);
  await mkdir(dirname(target), { recursive: true });
  await writeFile(target, f.text);
  console.log(`wrote ${f.path}`);
}

/**
 * Each kernel test file's podtap objects under a pin root of its own
 * (vitest setupFiles of the kernel project): its sniffers', its agents' (the
 * lab's, which inherit the environment), the node budget they share, and
 * what `podtap cleanup` removes. The host's /sys/fs/bpf/podtap is then only
 * the e2e's (the chart's agents) and a user's: a kernel test run by hand
 * while a suite's e2e checks that helm uninstall left nothing there no
 * longer fails that check (2026-12-06: "pins left after uninstall:
 * s-1d39024c67"), and no file sees another's sessions.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { afterAll } from 'vitest';

/** Where the private roots go: on the BPF filesystem, beside the product's. */
const TEST_PIN_BASE = '/sys/fs/bpf/podtap-t';

const root = `${TEST_PIN_BASE}${process.pid}-${randomBytes(3).toString('hex')}`;
mkdirSync(root, { recursive: true });
// read by src/datapath/session.ts (PIN_ROOT) when the test file imports it
process.env.PODTAP_PIN_ROOT = root;

afterAll(async () => {
  // what a failed test left (its programs go with their last pin; the tests
  // that promise "nothing left" check that themselves, before this)
  await rm(root, { recursive: true, force: true });
});

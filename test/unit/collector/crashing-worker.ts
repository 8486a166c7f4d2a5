/**
 * An ingest worker that dies once, as a bug would kill it: the real worker
 * module, plus an uncaught exception in worker 0 as soon as the test creates
 * the file `$PODTAP_TEST_CRASH_MARK.now` — only the first time (the marker
 * file itself says it happened), so its successor lives. That first worker 0
 * never sends its periodic counts: what it counted reaches the collector only
 * through what a dying worker hands over, which the test thereby checks.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { workerData } from 'node:worker_threads';

const mark = process.env.PODTAP_TEST_CRASH_MARK;
const doomed = mark !== undefined && (workerData as { index: number }).index === 0 && !existsSync(mark);
if (doomed) {
  // the worker reports its counts every 250 ms: not this one
  const realSetInterval = globalThis.setInterval;
  globalThis.setInterval = ((fn: () => void, ms?: number) => realSetInterval(fn, ms === 250 ? 3_600_000 : ms)) as typeof setInterval;
  const poll = realSetInterval(() => {
    if (!existsSync(`${mark}.now`)) return;
    clearInterval(poll);
    writeFileSync(mark, '');
    throw new Error('injected crash');
  }, 5);
  poll.unref();
}
await import('../../../src/collector/worker.ts');

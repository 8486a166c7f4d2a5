/**
 * An ingest worker that dies once, as a bug would kill it: the real worker
 * module, plus an uncaught exception in worker 0 as soon as the test creates
 * the file `$PODTAP_TEST_CRASH_MARK.now` — only the first time (the marker
 * file itself says it happened), so its successor lives.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { workerData } from 'node:worker_threads';
import '../../../src/collector/worker.ts';

const mark = process.env.PODTAP_TEST_CRASH_MARK;
if (mark && (workerData as { index: number }).index === 0 && !existsSync(mark)) {
  const poll = setInterval(() => {
    if (!existsSync(`${mark}.now`)) return;
    clearInterval(poll);
    writeFileSync(mark, '');
    throw new Error('injected crash');
  }, 5);
  poll.unref();
}

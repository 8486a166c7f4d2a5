/**
 * Interrupt coalescing for a thread that reads UDP sockets.
 *
 * Node reads one datagram per recvmsg, and every event-loop turn costs a
 * wakeup, an epoll_wait and the loop's phases. At moderate rates (a datagram
 * or two per turn) the turn costs more than the datagram. After a turn that
 * drained the sockets — fewer reads than libuv's per-turn limit — the thread
 * sleeps `ms`, so the next turn finds a batch waiting: what a NIC's interrupt
 * moderation or tcpdump's ring block timeout do. The socket buffers hold the
 * meantime (1 ms at 1 Gbit/s is 125 KB).
 */

/** Datagrams libuv reads from one socket per event-loop turn at most (uv__udp_recvmsg). */
export const UV_READS_PER_TURN = 32;

/**
 * Returns the function to call for each datagram read. `afterTurn` runs once
 * per event-loop turn that read something, before the sleep.
 */
export function readCoalescer(ms: number, afterTurn?: () => void): () => void {
  if (ms <= 0 && !afterTurn) return () => undefined; // nothing to do per turn: cost nothing
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  let scheduled = false;
  let reads = 0;
  const turn = (): void => {
    scheduled = false;
    const n = reads;
    reads = 0;
    afterTurn?.();
    if (ms > 0 && n < UV_READS_PER_TURN) Atomics.wait(sleeper, 0, 0, ms);
  };
  return () => {
    reads++;
    if (!scheduled) {
      scheduled = true;
      setImmediate(turn);
    }
  };
}

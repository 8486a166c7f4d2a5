/** What /proc says of a process the benches started (kube-apiserver, etcd, the controller). */
import { readFile } from 'node:fs/promises';

/** A process's CPU time so far (utime + stime), in seconds. */
export async function cpuSeconds(pid: number): Promise<number> {
  const f = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // clock ticks of 1/100 s
}

/** A process's peak resident memory (VmHWM), in MB. */
export async function rssPeakMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
}

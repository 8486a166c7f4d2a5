/**
 * scripts/cluster.sh's commands (that script builds the programs first and
 * passes their directory in PODTAP_CLUSTER_BIN).
 */
import { execa } from 'execa';
import { CLUSTER, LAYOUTS, NETNS_PATH, STATE, down, leftovers, paths, readRecord, relayout, status, up, type Layout } from './cluster.ts';
import { IMAGES, archive, buildImages } from './images.ts';

const USAGE = `usage: scripts/cluster.sh COMMAND

  up [--layout bridge|ptp]   build what is missing (cached by version), then start a
                             single-node cluster in the network namespace ${CLUSTER.netns}
                             (default layout: bridge)
  layout bridge|ptp          switch the pod network layout of the running cluster
                             (no pod on the pod network may exist: the next pods get it)
  down                       stop everything and remove every trace; fails naming
                             what it could not remove
  status                     the programs, and kubectl get nodes
  check-clean                exit 1 and list what a cluster left on this machine
  images                     (re)build the images: ${Object.values(IMAGES).join(', ')}
  exec -- CMD [ARGS...]      run CMD inside the node's network namespace, with
                             KUBECONFIG (admin) and the cluster's programs on PATH
  kubectl ARGS...            kubectl as the admin, e.g. scripts/cluster.sh kubectl get pods -A
  env                        print the variables exec sets (KUBECONFIG, PATH, PODTAP_CLUSTER_*)

Environment: PODTAP_CLUSTER_STATE (default /var/lib/podtap/cluster),
PODTAP_CLUSTER_CACHE (default /var/cache/podtap-cluster).`;

function bin(): string {
  // up: the freshly built programs; every other command: those the cluster runs
  const b = process.env.PODTAP_CLUSTER_BIN ?? readRecord()?.bin;
  if (!b) throw new Error('no cluster is up (and PODTAP_CLUSTER_BIN is not set): scripts/cluster.sh up');
  return b;
}

function execEnv(): Record<string, string> {
  return {
    KUBECONFIG: paths.adminKubeconfig,
    PATH: `${bin()}:${process.env.PATH}`,
    PODTAP_CLUSTER_STATE: STATE,
    PODTAP_CLUSTER_NETNS: NETNS_PATH,
    PODTAP_CLUSTER_NODE: CLUSTER.nodeName,
    PODTAP_CLUSTER_LAYOUT: readRecord()?.layout ?? '',
  };
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'up': {
      let layout: Layout = 'bridge';
      for (let i = 0; i < rest.length; i++) {
        const a = rest[i]!;
        const v = a.startsWith('--layout=') ? a.slice(9) : a === '--layout' ? rest[++i] : undefined;
        if (v === undefined) throw new UsageError(`up: unknown argument '${a}'`);
        if (!LAYOUTS.includes(v as Layout)) throw new UsageError(`up: --layout must be one of ${LAYOUTS.join(', ')}, not '${v}'`);
        layout = v as Layout;
      }
      const images = [archive('pause'), archive('podtap'), archive('testpod')];
      await up({ layout, bin: bin(), sandboxImage: IMAGES.pause, images });
      console.log(`cluster up (${layout}). Try: scripts/cluster.sh kubectl get nodes -o wide`);
      return 0;
    }
    case 'layout': {
      const v = rest[0];
      if (!LAYOUTS.includes(v as Layout) || rest.length !== 1) throw new UsageError(`layout takes one of ${LAYOUTS.join(', ')}`);
      await relayout(v as Layout);
      return 0;
    }
    case 'down':
      await down();
      return 0;
    case 'status':
      console.log(await status());
      return readRecord() ? 0 : 3;
    case 'check-clean': {
      const left = await leftovers(readRecord());
      for (const l of left) console.log(l);
      return left.length ? 1 : 0;
    }
    case 'images': {
      const pause = process.env.PODTAP_CLUSTER_PAUSE_BIN;
      if (!pause) throw new Error('PODTAP_CLUSTER_PAUSE_BIN is not set: run this through scripts/cluster.sh');
      await buildImages(`${pause}/pause`);
      return 0;
    }
    case 'env':
      for (const [k, v] of Object.entries(execEnv())) console.log(`export ${k}='${v}'`);
      return 0;
    case 'kubectl':
    case 'exec': {
      if (!readRecord()) throw new Error('no cluster is up: scripts/cluster.sh up');
      const args = cmd === 'kubectl' ? ['kubectl', ...rest] : rest[0] === '--' ? rest.slice(1) : rest;
      if (!args.length) throw new UsageError('exec: name a command: scripts/cluster.sh exec -- CMD [ARGS...]');
      const r = await execa('nsenter', [`--net=${NETNS_PATH}`, '--', ...args], { stdio: 'inherit', reject: false, env: execEnv() });
      return r.exitCode ?? 1;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command '${cmd}'`);
  }
}

class UsageError extends Error {}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`cluster: ${(err as Error).message}`);
    if (err instanceof UsageError) console.error(USAGE);
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);

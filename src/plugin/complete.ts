/**
 * Shell completion for `kubectl podtap`, by kubectl's plugin protocol
 * (kubectl 1.26+): kubectl runs `kubectl_complete-podtap WORDS…` (that
 * executable runs `kubectl-podtap __complete WORDS…`), the last word being the
 * one typed so far; the answer is one candidate per line, then `:N`, cobra's
 * directive (4: no file names, 0: the shell's default, files).
 * Subcommands, each subcommand's own options, and from the cluster: pods and
 * workloads for capture, policies, namespaces, contexts. A cluster that does
 * not answer gives no candidates, never an error.
 */
import { CAPTURE_DIRECTION_WORDS } from './direction.ts';
import type { PluginIO } from './capture.ts';
import { Kube } from './kube.ts';
import { OPTIONS, optionsOf, Subcommands, type OptionName, type Subcommand } from './options.ts';
import { ExitCode } from '../util/errors.ts';

const NO_FILES = 4;
const FILES = 0;
const WORKLOADS = { 'deploy/': 'Deployment', 'sts/': 'StatefulSet', 'ds/': 'DaemonSet', 'rs/': 'ReplicaSet' } as const;

/** The option a word names (--namespace, -n, --namespace=x), if any. */
function optionOf(word: string): OptionName | undefined {
  if (word.startsWith('--')) return word.slice(2).split('=')[0] as OptionName;
  if (/^-[a-zA-Z]$/.test(word)) return (Object.keys(OPTIONS) as OptionName[]).find((k) => (OPTIONS[k] as { short?: string }).short === word[1]);
  return undefined;
}

async function quietly<T>(f: () => Promise<T[]>): Promise<T[]> {
  try {
    return await f();
  } catch {
    return [];
  }
}

export async function candidates(words: string[]): Promise<{ items: string[]; directive: number }> {
  const cur = words.at(-1) ?? '';
  const before = words.slice(0, -1);
  // positionals and option values seen so far
  const flags: Partial<Record<OptionName, string>> = {};
  const positionals: string[] = [];
  for (let i = 0; i < before.length; i++) {
    const w = before[i]!;
    const o = optionOf(w);
    if (o && OPTIONS[o]?.type === 'string' && !w.includes('=')) flags[o] = before[++i] ?? '';
    else if (o && w.includes('=')) flags[o] = w.slice(w.indexOf('=') + 1);
    else if (!o) positionals.push(w);
  }
  const cmd = (Subcommands as readonly string[]).includes(positionals[0] ?? '') ? (positionals[0] as Subcommand) : undefined;
  const kube = (): Kube => new Kube({ kubeconfig: flags.kubeconfig, context: flags.context, namespace: flags.namespace });
  const ns = (): string => kube().namespace;

  // the value of an option
  const prev = optionOf(before.at(-1) ?? '');
  if (prev && OPTIONS[prev]?.type === 'string' && !(before.at(-1) ?? '').includes('=')) {
    switch (prev) {
      case 'namespace':
      case 'collector-namespace':
        return { items: await quietly(async () => (await kube().core.listNamespace()).items.map((n) => n.metadata?.name ?? '')), directive: NO_FILES };
      case 'context':
        return { items: await quietly(async () => kube().kc.getContexts().map((c) => c.name)), directive: NO_FILES };
      case 'policy':
        return { items: await quietly(async () => (await kube().listPolicies(ns())).map((p) => p.metadata.name ?? '')), directive: NO_FILES };
      case 'direction':
        return { items: [...CAPTURE_DIRECTION_WORDS], directive: NO_FILES };
      case 'output':
        return { items: cmd === 'list' ? ['json'] : ['-'], directive: NO_FILES };
      case 'write':
      case 'kubeconfig':
      case 'token-file':
        return { items: [], directive: FILES };
      default:
        return { items: [], directive: NO_FILES };
    }
  }
  if (cur.startsWith('-')) {
    const names = cmd ? optionsOf(cmd) : (['help', 'version'] as OptionName[]);
    return { items: names.map((n) => `--${n}`), directive: NO_FILES };
  }
  if (!cmd) return { items: [...Subcommands], directive: NO_FILES };
  if (cmd === 'capture' && positionals.length === 1 && flags.selector === undefined) {
    const prefix = (Object.keys(WORKLOADS) as (keyof typeof WORKLOADS)[]).find((p) => cur.startsWith(p));
    if (prefix) {
      const k = kube();
      const list = {
        Deployment: () => k.apps.listNamespacedDeployment({ namespace: k.namespace }),
        StatefulSet: () => k.apps.listNamespacedStatefulSet({ namespace: k.namespace }),
        DaemonSet: () => k.apps.listNamespacedDaemonSet({ namespace: k.namespace }),
        ReplicaSet: () => k.apps.listNamespacedReplicaSet({ namespace: k.namespace }),
      }[WORKLOADS[prefix]];
      return { items: await quietly(async () => (await list()).items.map((w) => `${prefix}${w.metadata?.name ?? ''}`)), directive: NO_FILES };
    }
    const pods = await quietly(async () => (await kube().core.listNamespacedPod({ namespace: ns() })).items.map((p) => p.metadata?.name ?? ''));
    return { items: [...pods, ...Object.keys(WORKLOADS)], directive: NO_FILES };
  }
  if (cmd === 'status' && positionals.length === 1) {
    return { items: await quietly(async () => (await kube().listPolicies(ns())).map((p) => p.metadata.name ?? '')), directive: NO_FILES };
  }
  return { items: [], directive: NO_FILES };
}

export async function complete(words: string[], io: PluginIO): Promise<number> {
  const { items, directive } = await candidates(words.length ? words : ['']);
  const cur = words.at(-1) ?? '';
  for (const c of items.filter((x) => x && x.startsWith(cur))) io.stdout.write(`${c}\n`);
  io.stdout.write(`:${directive}\n`);
  return ExitCode.ok;
}

/**
 * kubectl podtap's options, each with the subcommands it belongs to: one
 * table for the parser (plugin.ts), the per-subcommand check ("--wireshark is
 * not an option of list") and shell completion (complete.ts).
 */
export const Subcommands = ['capture', 'list', 'status', 'fetch', 'version'] as const;
export type Subcommand = (typeof Subcommands)[number];

type Opt = { type: 'string' | 'boolean'; short?: string; multiple?: boolean; default?: string; for: readonly Subcommand[] | 'all' };

const CLUSTER = ['capture', 'list', 'status', 'fetch'] as const;

export const OPTIONS = {
  namespace: { type: 'string', short: 'n', for: CLUSTER },
  'all-namespaces': { type: 'boolean', short: 'A', for: ['list', 'status'] },
  selector: { type: 'string', short: 'l', for: ['capture'] },
  filter: { type: 'string', short: 'f', multiple: true, for: ['capture'] },
  direction: { type: 'string', default: 'both', for: ['capture'] },
  snaplen: { type: 'string', default: '0', for: ['capture'] },
  'max-packets': { type: 'string', default: '0', for: ['capture'] },
  duration: { type: 'string', default: '10m', for: ['capture'] },
  for: { type: 'string', for: ['capture'] },
  write: { type: 'string', short: 'w', for: ['capture', 'fetch'] },
  output: { type: 'string', short: 'o', for: ['capture', 'list', 'fetch'] },
  wireshark: { type: 'boolean', for: ['capture'] },
  policy: { type: 'string', for: ['list', 'fetch'] },
  kubeconfig: { type: 'string', for: CLUSTER },
  context: { type: 'string', for: CLUSTER },
  'collector-namespace': { type: 'string', for: CLUSTER },
  'collector-service': { type: 'string', for: CLUSTER },
  'collector-port': { type: 'string', for: CLUSTER },
  'collector-url': { type: 'string', for: CLUSTER },
  'token-file': { type: 'string', for: CLUSTER },
  'collector-token-secret': { type: 'string', for: CLUSTER },
  help: { type: 'boolean', short: 'h', for: 'all' },
  version: { type: 'boolean', for: 'all' },
} as const satisfies Record<string, Opt>;

export type OptionName = keyof typeof OPTIONS;

/** The options node:util's parseArgs takes (the table without the scopes). */
export function parseArgsOptions(): Record<OptionName, Omit<Opt, 'for'>> {
  return Object.fromEntries(Object.entries(OPTIONS).map(([k, { for: _, ...o }]) => [k, o])) as Record<OptionName, Omit<Opt, 'for'>>;
}

export function optionsOf(cmd: Subcommand): OptionName[] {
  return (Object.keys(OPTIONS) as OptionName[]).filter((k) => {
    const scope = OPTIONS[k].for;
    return scope === 'all' || (scope as readonly Subcommand[]).includes(cmd);
  });
}

/** The first option given that @cmd does not take, with the subcommands that do. */
export function foreignOption(cmd: Subcommand, given: Iterable<string>): { option: string; takenBy: readonly Subcommand[] } | undefined {
  const allowed = new Set<string>(optionsOf(cmd));
  for (const name of given) {
    if (!allowed.has(name)) {
      const scope = OPTIONS[name as OptionName]?.for;
      return { option: name, takenBy: scope === undefined || scope === 'all' ? [] : scope };
    }
  }
  return undefined;
}

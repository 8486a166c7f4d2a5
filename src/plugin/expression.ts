/**
 * A small tcpdump-like filter expression for `kubectl podtap capture -f`,
 * mapped onto a SniffPolicy's spec.filter:
 *
 *   tcp | udp | icmp | icmp6 | sctp            protocols
 *   port N | portrange A-B                      ports, either end
 *   tcp port N, udp portrange A-B, ...          a protocol and a port
 *   host IP | net CIDR | net IP mask MASK       the peer's address
 *   tcp[tcpflags] & (tcp-syn|tcp-rst) != 0      TCP packets with any of these flags
 *   and (&&), or (||), parentheses
 *
 * spec.filter ANDs its kinds (protocols, ports, peers, TCP flags) and ORs the
 * values of one kind. So an expression is accepted exactly when it has that
 * shape: `or` only between primitives of the same kind, `and` between kinds.
 * What it cannot express is refused, saying why, never approximated:
 * `not`, `src`/`dst` (the policy matches the peer at either end: use
 * --direction), `or` across kinds, a kind repeated under `and`, and anything
 * else of tcpdump's language.
 */
import { TcpFlags, isIPAddress, type Filter, type Protocol, type TcpFlag } from '../api/index.ts';
import { ExitCode, UserError } from '../util/errors.ts';

type Kind = 'protocols' | 'ports' | 'cidrs' | 'tcpFlags';
type Value = Protocol | { port: number; endPort?: number } | string | TcpFlag;
/** A primitive: one or more (kind, value) facts that must all hold. */
type Prim = { t: 'prim'; facts: { kind: Kind; value: Value }[]; text: string };
type Node = Prim | { t: 'and' | 'or'; left: Node; right: Node };

const PROTOCOL_WORDS: Record<string, Protocol> = { tcp: 'TCP', udp: 'UDP', icmp: 'ICMP', icmp6: 'ICMPv6', icmpv6: 'ICMPv6', sctp: 'SCTP' };
const KIND_NAMES: Record<Kind, string> = { protocols: 'protocol', ports: 'port', cidrs: 'host/net', tcpFlags: 'TCP flags' };

export function expressionError(expr: string, message: string): UserError {
  return new UserError(`-f "${expr}": ${message}`, {
    exitCode: ExitCode.usage,
    hint: 'e.g. -f "tcp port 443 and host 10.0.0.5", -f "(port 80 or port 443) and net 10.0.0.0/8"; a SniffPolicy filter ANDs protocols, ports, peers and TCP flags and ORs the values of each',
  });
}

function tokenize(expr: string): string[] {
  // tcp[tcpflags] & (tcp-syn|tcp-rst) != 0 is one primitive: keep it whole
  const flags = /tcp\s*\[\s*(?:tcpflags|13)\s*\]\s*&\s*\(?\s*([a-z|\s-]+?)\s*\)?\s*!=\s*0/g;
  const spaced = expr.replace(flags, (_, list: string) => ` TCPFLAGS:${list.replace(/\s+/g, '')} `);
  return spaced.replace(/&&|\|\||[()!]/g, (m) => ` ${m} `).split(/\s+/).filter(Boolean);
}

function mask(bits: string): number | undefined {
  if (!isIPAddress(bits) || bits.includes(':')) return undefined;
  const n = bits.split('.').reduce((a, o) => a * 256 + Number(o), 0);
  const len = 32 - Math.log2(2 ** 32 - n);
  return Number.isInteger(len) ? len : undefined;
}

export function parseExpression(expr: string): Filter {
  const tokens = tokenize(expr);
  let i = 0;
  const fail = (m: string): never => {
    throw expressionError(expr, m);
  };
  const peek = (): string | undefined => tokens[i]?.toLowerCase();
  const next = (): string => tokens[i++] ?? fail('ends too soon');

  const port = (w: string, range: boolean): { port: number; endPort?: number } => {
    const m = range ? /^(\d+)-(\d+)$/.exec(w) : /^(\d+)$/.exec(w);
    if (!m) fail(range ? `"${w}" is not a port range like 8000-8100` : `"${w}" is not a port number (service names are not looked up)`);
    return m![2] === undefined ? { port: Number(m![1]) } : { port: Number(m![1]), endPort: Number(m![2]) };
  };

  const primitive = (): Prim => {
    const start = i;
    const w = next().toLowerCase();
    const facts: Prim['facts'] = [];
    if (w === 'not' || w === '!') fail('"not" cannot be expressed: a SniffPolicy filter selects, it does not exclude');
    if (w === 'src' || w === 'dst') fail(`"${w}" cannot be expressed: the filter matches the peer at either end; capture one direction with --direction`);
    if (w.startsWith('tcpflags:')) {
      for (const f of w.slice(9).split('|')) {
        const flag = f.replace(/^tcp-/, '').toUpperCase() as TcpFlag;
        if (!TcpFlags.includes(flag)) fail(`unknown TCP flag "${f}" (tcp-${TcpFlags.map((x) => x.toLowerCase()).join(', tcp-')})`);
        facts.push({ kind: 'tcpFlags', value: flag });
      }
      // flags only in TCP packets: the protocol is implied, as in tcpdump
      return { t: 'prim', facts: [{ kind: 'protocols', value: 'TCP' }, ...facts], text: tokens.slice(start, i).join(' ') };
    }
    const proto = PROTOCOL_WORDS[w];
    let word = w;
    if (proto) {
      facts.push({ kind: 'protocols', value: proto });
      if (peek() !== 'port' && peek() !== 'portrange') return { t: 'prim', facts, text: tokens.slice(start, i).join(' ') };
      if (proto !== 'TCP' && proto !== 'UDP' && proto !== 'SCTP') fail(`${w} has no ports`);
      word = next().toLowerCase();
    }
    switch (word) {
      case 'port':
        facts.push({ kind: 'ports', value: port(next(), false) });
        break;
      case 'portrange':
        facts.push({ kind: 'ports', value: port(next(), true) });
        break;
      case 'host': {
        const ip = next();
        if (!isIPAddress(ip)) fail(`"${ip}" is not an IP address (host names are not resolved)`);
        facts.push({ kind: 'cidrs', value: ip.includes(':') ? `${ip}/128` : `${ip}/32` });
        break;
      }
      case 'net': {
        let cidr = next();
        if (peek() === 'mask') {
          next();
          const m = mask(next());
          if (m === undefined) fail('"mask" needs a contiguous IPv4 netmask such as 255.255.0.0');
          cidr = `${cidr}/${m}`;
        }
        if (!/^[0-9a-f:.]+\/\d{1,3}$/i.test(cidr) || !isIPAddress(cidr.split('/')[0]!)) fail(`"${cidr}" is not a network such as 10.0.0.0/8`);
        facts.push({ kind: 'cidrs', value: cidr });
        break;
      }
      default:
        fail(`"${tokens[i - 1]}" is not something podtap's filter can express (protocols, port, portrange, host, net, tcp[tcpflags])`);
    }
    return { t: 'prim', facts, text: tokens.slice(start, i).join(' ') };
  };

  // tcpdump gives "and" and "or" equal precedence, left to right: so here
  const term = (): Node => {
    if (peek() === '(') {
      next();
      const n = disjunction();
      if (next() !== ')') fail('a "(" is not closed');
      return n;
    }
    return primitive();
  };
  const disjunction = (): Node => {
    let left = term();
    for (;;) {
      const op = peek();
      if (op === 'and' || op === '&&' || op === 'or' || op === '||') {
        next();
        const right = term();
        left = { t: op === 'and' || op === '&&' ? 'and' : 'or', left, right };
      } else return left;
    }
  };

  const root = disjunction();
  if (i < tokens.length) fail(`unexpected "${tokens[i]}"`);

  // an AND of groups; each group is one kind's OR (or a primitive's facts)
  const groups: { kind: Kind; values: Value[] }[] = [];
  const orKinds = (n: Node): { kind: Kind; values: Value[] } => {
    if (n.t === 'prim') {
      if (n.facts.length !== 1) fail(`"${n.text}" combines kinds and cannot be joined with "or" (spec.filter ANDs kinds): write e.g. "tcp and (port 80 or port 443)"`);
      return { kind: n.facts[0]!.kind, values: [n.facts[0]!.value] };
    }
    if (n.t === 'and') fail('"and" inside "or" cannot be expressed (spec.filter is an AND of ORs)');
    const a = orKinds(n.left);
    const b = orKinds(n.right);
    if (a.kind !== b.kind) fail(`"or" joins a ${KIND_NAMES[a.kind]} and a ${KIND_NAMES[b.kind]}: spec.filter ANDs kinds; capture them separately`);
    return { kind: a.kind, values: [...a.values, ...b.values] };
  };
  const andTerms = (n: Node): void => {
    if (n.t === 'and') {
      andTerms(n.left);
      andTerms(n.right);
    } else if (n.t === 'prim') {
      // one primitive's values of a kind are alternatives (tcp-syn|tcp-rst)
      for (const kind of new Set(n.facts.map((f) => f.kind))) groups.push({ kind, values: n.facts.filter((f) => f.kind === kind).map((f) => f.value) });
    } else groups.push(orKinds(n));
  };
  andTerms(root);

  const filter: Filter = {};
  for (const g of groups) {
    const have = filter[g.kind] as Value[] | undefined;
    if (have && JSON.stringify(have) !== JSON.stringify(g.values)) {
      // tcp[tcpflags] implies TCP: that repeats a protocol harmlessly when it is TCP alone
      const implied = g.kind === 'protocols' && [have, g.values].some((v) => JSON.stringify(v) === '["TCP"]') && [have, g.values].every((v) => (v as string[]).includes('TCP'));
      if (implied) {
        (filter as Record<string, unknown>)[g.kind] = ['TCP'];
        continue;
      }
      fail(`${KIND_NAMES[g.kind]} appears twice joined by "and": spec.filter has one set per kind (use "or" within it)`);
    }
    (filter as Record<string, unknown>)[g.kind] = [...new Map(g.values.map((v) => [JSON.stringify(v), v])).values()];
  }
  return filter;
}

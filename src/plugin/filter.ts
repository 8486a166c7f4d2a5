/**
 * `-f, --filter`, repeatable, into a SniffPolicy's spec.filter: a tcpdump-like
 * expression (expression.ts: -f "tcp port 443 and host 10.0.0.5"), or
 * KEY=VALUE[,VALUE…]:
 *
 *   proto=tcp,udp              protocols (tcp, udp, icmp, icmpv6, sctp)
 *   port=443,8000-8100         ports or ranges, either end of the packet
 *   cidr=10.0.0.0/8,fd00::/8   the peer's address (host=IP is a /32 or /128)
 *   tcp-flags=syn,rst          TCP packets with any of these flags
 *
 * Keys combine with AND, values of one key with OR — the policy's own
 * semantics; nothing is lost in translation, so there is no expression
 * language to learn.
 */
import { FilterSchema, Protocols, TcpFlags, describeIssues, isIPAddress, type Filter, type Protocol, type TcpFlag } from '../api/index.ts';
import { ExitCode, UserError } from '../util/errors.ts';
import { parseExpression } from './expression.ts';

const PROTOCOLS: Record<string, Protocol> = { tcp: 'TCP', udp: 'UDP', icmp: 'ICMP', icmpv6: 'ICMPv6', icmp6: 'ICMPv6', sctp: 'SCTP' };

function usage(message: string): UserError {
  return new UserError(`--filter: ${message}`, {
    exitCode: ExitCode.usage,
    hint: 'e.g. --filter proto=tcp --filter port=443,8000-8100 --filter cidr=10.0.0.0/8 --filter tcp-flags=syn',
  });
}

/** KEY=VALUE (this module) or an expression (expression.ts)? */
const KEY_VALUE = /^\s*[a-z-]+\s*=/i;

export function parseFilters(args: readonly string[]): Filter | undefined {
  if (args.length === 0) return undefined;
  const protocols = new Set<Protocol>();
  const ports: { port: number; endPort?: number }[] = [];
  const cidrs: string[] = [];
  const flags = new Set<TcpFlag>();
  const expressions: Filter[] = [];
  for (const arg of args) {
    if (!KEY_VALUE.test(arg)) {
      expressions.push(parseExpression(arg));
      continue;
    }
    const eq = arg.indexOf('=');
    if (eq < 1) throw usage(`"${arg}" is not KEY=VALUE`);
    const key = arg.slice(0, eq).trim().toLowerCase();
    const values = arg.slice(eq + 1).split(',').map((v) => v.trim()).filter((v) => v !== '');
    if (values.length === 0) throw usage(`"${arg}" has no value`);
    for (const v of values) {
      switch (key) {
        case 'proto':
        case 'protocol': {
          const p = PROTOCOLS[v.toLowerCase()];
          if (!p) throw usage(`unknown protocol "${v}" (${Protocols.join(', ')})`);
          protocols.add(p);
          break;
        }
        case 'port': {
          const m = /^(\d+)(?:-(\d+))?$/.exec(v);
          if (!m) throw usage(`"${v}" is not a port or a range like 8000-8100`);
          ports.push(m[2] === undefined ? { port: Number(m[1]) } : { port: Number(m[1]), endPort: Number(m[2]) });
          break;
        }
        case 'cidr':
        case 'net':
          cidrs.push(v);
          break;
        case 'host':
          if (!isIPAddress(v)) throw usage(`"${v}" is not an IP address`);
          cidrs.push(v.includes(':') ? `${v}/128` : `${v}/32`);
          break;
        case 'tcp-flags':
        case 'flags': {
          const f = v.toUpperCase() as TcpFlag;
          if (!TcpFlags.includes(f)) throw usage(`unknown TCP flag "${v}" (${TcpFlags.join(', ')})`);
          flags.add(f);
          break;
        }
        default:
          throw usage(`unknown key "${key}" (proto, port, cidr, host, tcp-flags)`);
      }
    }
  }
  const filter: Filter = {
    ...(protocols.size ? { protocols: [...protocols] } : {}),
    ...(ports.length ? { ports } : {}),
    ...(cidrs.length ? { cidrs } : {}),
    ...(flags.size ? { tcpFlags: [...flags] } : {}),
  };
  // several filters are ANDed: each kind may come from one of them only
  for (const e of expressions) {
    for (const [kind, values] of Object.entries(e) as [keyof Filter, unknown][]) {
      if (filter[kind] !== undefined && JSON.stringify(filter[kind]) !== JSON.stringify(values)) {
        throw usage(`two filters both restrict ${kind}: spec.filter has one set per kind; put them in one expression with "or"`);
      }
      (filter as Record<string, unknown>)[kind] = values;
    }
  }
  const r = FilterSchema.safeParse(filter);
  if (!r.success) throw usage(describeIssues(r.error).map((l) => l.replace(/^(\S+):/, 'filter.$1:')).join('; '));
  return r.data;
}

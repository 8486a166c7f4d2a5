/**
 * Addresses as flags take them, once: HOST:PORT, [IPV6]:PORT, :PORT, PORT,
 * HOST and [IPV6]. A bare IPv6 address is refused: "::1:6081" could be an
 * address or an address and a port, so IPv6 goes in brackets. The parts left
 * out come back undefined: each flag has its own defaults and its own rules
 * (an IP only, a port required).
 */
import { isIPv6 } from 'node:net';

/** What is wrong with an address, in words for the flag's error message. */
export class AddressSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AddressSyntaxError';
  }
}

export interface HostPort {
  host: string | undefined;
  port: number | undefined;
}

export function parseHostPort(s: string): HostPort {
  if (s === '') return { host: undefined, port: undefined };
  if (/^\d+$/.test(s)) return { host: undefined, port: port(s) };
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(s);
  if (bracketed) {
    const host = bracketed[1]!;
    if (!isIPv6(host)) throw new AddressSyntaxError(`${host} is not an IPv6 address`);
    return { host, port: bracketed[2] === undefined ? undefined : port(bracketed[2]) };
  }
  const colon = s.lastIndexOf(':');
  if (colon < 0) return { host: s, port: undefined };
  const host = s.slice(0, colon);
  if (host.includes(':')) throw new AddressSyntaxError(`write IPv6 addresses in brackets, e.g. [${host}]:${s.slice(colon + 1) || 'PORT'}`);
  return { host: host === '' ? undefined : host, port: port(s.slice(colon + 1)) };
}

function port(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n > 65535) throw new AddressSyntaxError(`bad port "${text}"`);
  return n;
}

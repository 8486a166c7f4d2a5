/**
 * IP and CIDR syntax as the Kubernetes CEL library accepts it (`isIP()`,
 * `isCIDR()`: Go's netip parser, minus zones and IPv4-mapped IPv6). The zod
 * schemas and the CEL test functions both use these, so a policy the CLI
 * accepts is one the API server accepts too.
 */

/** The 4 or 16 bytes of an address, or undefined when `s` is not one. */
export function parseIP(s: string): Uint8Array | undefined {
  if (s.includes(':')) {
    const bytes = parseIPv6(s);
    // ::ffff:a.b.c.d (however it is written) is refused by Kubernetes.
    if (bytes && bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return undefined;
    return bytes;
  }
  return parseIPv4(s);
}

export function isIPAddress(s: string): boolean {
  return parseIP(s) !== undefined;
}

/** `address/bits`; host bits may be set (netip.ParsePrefix accepts 10.0.0.1/8). */
export function isCIDR(s: string): boolean {
  const slash = s.indexOf('/');
  if (slash < 0) return false;
  const bits = s.slice(slash + 1);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(bits)) return false;
  const addr = parseIP(s.slice(0, slash));
  return addr !== undefined && Number(bits) <= addr.length * 8;
}

function parseIPv4(s: string): Uint8Array | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (const [i, p] of parts.entries()) {
    // Leading zeros are refused: 010 reads as octal to some parsers.
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255) return undefined;
    out[i] = Number(p);
  }
  return out;
}

function parseIPv6(s: string): Uint8Array | undefined {
  if (s.includes('%')) return undefined; // zones are not allowed
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const groups = (text: string): number[] | undefined => {
    if (text === '') return [];
    const out: number[] = [];
    const parts = text.split(':');
    for (const [i, p] of parts.entries()) {
      if (i === parts.length - 1 && p.includes('.')) {
        const v4 = parseIPv4(p);
        if (!v4) return undefined;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(p)) {
        out.push(parseInt(p, 16));
      } else {
        return undefined;
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return undefined;
  // An embedded IPv4 address may only end the address.
  if (halves.length === 2 && halves[0]!.includes('.')) return undefined;
  const count = head.length + tail.length;
  if (halves.length === 1 ? count !== 8 : count > 7) return undefined;
  const all = [...head, ...new Array<number>(8 - count).fill(0), ...tail];
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

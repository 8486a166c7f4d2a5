import { describe, expect, it } from 'vitest';
import { parseHostPort } from '../../../src/util/hostport.ts';

describe('addresses as flags take them', () => {
  it.each([
    { description: 'host and port', input: '198.18.0.5:7000', expected: { host: '198.18.0.5', port: 7000 } },
    { description: 'port only', input: ':7000', expected: { host: undefined, port: 7000 } },
    { description: 'bare port', input: '7000', expected: { host: undefined, port: 7000 } },
    { description: 'host only', input: '127.0.0.1', expected: { host: '127.0.0.1', port: undefined } },
    { description: 'a name', input: 'collector.local:6081', expected: { host: 'collector.local', port: 6081 } },
    { description: 'IPv6 and port', input: '[2001:db8::2]:6081', expected: { host: '2001:db8::2', port: 6081 } },
    { description: 'IPv6 alone, in brackets', input: '[::1]', expected: { host: '::1', port: undefined } },
    { description: 'port 0 (any free port)', input: '127.0.0.1:0', expected: { host: '127.0.0.1', port: 0 } },
    { description: 'empty', input: '', expected: { host: undefined, port: undefined } },
  ])('$description: $input', ({ input, expected }) => {
    expect(parseHostPort(input)).toEqual(expected);
  });

  it.each([
    { description: 'a bare IPv6 address (address or address and port?)', input: '::1:6081', expected: 'write IPv6 addresses in brackets, e.g. [::1]:6081' },
    { description: 'a bare IPv6 address without port', input: '2001:db8::2', expected: 'write IPv6 addresses in brackets' },
    { description: 'a port out of range', input: '1.2.3.4:99999', expected: 'bad port "99999"' },
    { description: 'a port that is not a number', input: 'host:port', expected: 'bad port "port"' },
    { description: 'a bracketed non-IPv6', input: '[nope]:1', expected: 'nope is not an IPv6 address' },
    { description: 'a colon and nothing', input: '198.18.0.5:', expected: 'bad port ""' },
  ])('refuses $description', ({ input, expected }) => {
    expect(() => parseHostPort(input)).toThrow(expected);
  });
});

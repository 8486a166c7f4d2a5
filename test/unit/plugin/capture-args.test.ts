/** kubectl podtap capture's arguments: the tcpdump-like -f expression onto spec.filter (exactly, or a clear refusal), and the TARGET as kubectl names it. */
import { describe, expect, it } from 'vitest';
import { parseExpression } from '../../../src/plugin/expression.ts';
import { parseFilters } from '../../../src/plugin/filter.ts';
import { parseTarget } from '../../../src/plugin/target.ts';

describe('-f expressions', () => {
  it.each([
    { description: 'protocol, port and host', input: 'tcp port 443 and host 10.0.0.5', expected: { protocols: ['TCP'], ports: [{ port: 443 }], cidrs: ['10.0.0.5/32'] } },
    { description: 'ports ORed, a network ANDed', input: '(port 80 or port 443) and net 10.0.0.0/8', expected: { ports: [{ port: 80 }, { port: 443 }], cidrs: ['10.0.0.0/8'] } },
    { description: 'tcpdump precedence, left to right', input: 'port 80 || port 443 && host 2001:db8::1', expected: { ports: [{ port: 80 }, { port: 443 }], cidrs: ['2001:db8::1/128'] } },
    { description: 'protocols ORed', input: 'tcp or udp or icmp6', expected: { protocols: ['TCP', 'UDP', 'ICMPv6'] } },
    { description: 'a port range', input: 'udp portrange 8000-8100', expected: { protocols: ['UDP'], ports: [{ port: 8000, endPort: 8100 }] } },
    { description: 'net with a mask', input: 'net 192.168.0.0 mask 255.255.0.0', expected: { cidrs: ['192.168.0.0/16'] } },
    { description: 'TCP flags, TCP implied', input: 'tcp[tcpflags] & (tcp-syn|tcp-rst) != 0', expected: { protocols: ['TCP'], tcpFlags: ['SYN', 'RST'] } },
    { description: 'TCP flags with tcp said too', input: 'tcp and tcp[tcpflags] & tcp-fin != 0', expected: { protocols: ['TCP'], tcpFlags: ['FIN'] } },
    { description: 'a repeated value', input: 'port 53 or port 53', expected: { ports: [{ port: 53 }] } },
  ])('$description: $input', ({ input, expected }) => {
    expect(parseExpression(input)).toEqual(expected);
  });

  it.each([
    { description: 'not', input: 'not port 22', expected: /"not" cannot be expressed/ },
    { description: '!', input: '! tcp', expected: /"not" cannot be expressed/ },
    { description: 'src', input: 'src host 10.0.0.1', expected: /"src" cannot be expressed: .*--direction/ },
    { description: 'or across kinds', input: 'tcp or port 53', expected: /"or" joins a protocol and a port/ },
    { description: 'a combined primitive under or', input: 'tcp port 80 or udp port 53', expected: /"tcp port 80" combines kinds and cannot be joined with "or"/ },
    { description: 'and inside or', input: 'port 80 or (host 10.0.0.1 and port 443)', expected: /"and" inside "or"/ },
    { description: 'a kind twice under and', input: 'port 80 and port 443', expected: /port appears twice joined by "and"/ },
    { description: 'a service name', input: 'port https', expected: /"https" is not a port number \(service names are not looked up\)/ },
    { description: 'a host name', input: 'host example.com', expected: /"example.com" is not an IP address/ },
    { description: 'ICMP ports', input: 'icmp port 7', expected: /icmp has no ports/ },
    { description: 'an unknown word', input: 'vlan 100', expected: /"vlan" is not something podtap's filter can express/ },
    { description: 'an unclosed group', input: '(port 80 or port 443', expected: /not closed|ends too soon/ },
    { description: 'an unknown TCP flag', input: 'tcp[tcpflags] & tcp-foo != 0', expected: /unknown TCP flag "tcp-foo"/ },
    { description: 'UDP and TCP flags', input: 'udp and tcp[tcpflags] & tcp-syn != 0', expected: /protocol appears twice/ },
    { description: 'trailing words', input: 'tcp port 80 443', expected: /unexpected "443"/ },
  ])('refuses $description: $input', ({ input, expected }) => {
    expect(() => parseExpression(input)).toThrow(expected);
  });

  it.each([
    { description: 'an expression and K=V for other kinds are ANDed', input: ['tcp port 443', 'cidr=10.0.0.0/8'], expected: { protocols: ['TCP'], ports: [{ port: 443 }], cidrs: ['10.0.0.0/8'] } },
    { description: 'two expressions', input: ['host 10.0.0.5', 'udp'], expected: { protocols: ['UDP'], cidrs: ['10.0.0.5/32'] } },
  ])('--filter: $description', ({ input, expected }) => {
    expect(parseFilters(input)).toEqual(expected);
  });

  it('--filter: two filters restricting the same kind are refused', () => {
    expect(() => parseFilters(['port 80', 'port=443'])).toThrow(/two filters both restrict ports/);
  });

  it('--filter: what the expression makes is still validated by the policy schema', () => {
    expect(() => parseFilters(['port 70000'])).toThrow(/filter\.ports\[0\]\.port/);
  });
});

describe('capture targets', () => {
  it.each([
    { description: 'a bare name is a pod', input: 'web-1', expected: { kind: 'Pod', name: 'web-1' } },
    { description: 'po/', input: 'po/web-1', expected: { kind: 'Pod', name: 'web-1' } },
    { description: 'deploy/', input: 'deploy/web', expected: { kind: 'Deployment', name: 'web' } },
    { description: 'deployment.apps/', input: 'deployment.apps/web', expected: { kind: 'Deployment', name: 'web' } },
    { description: 'sts/', input: 'sts/db', expected: { kind: 'StatefulSet', name: 'db' } },
    { description: 'ds/', input: 'ds/node-exporter', expected: { kind: 'DaemonSet', name: 'node-exporter' } },
    { description: 'rs/', input: 'replicasets/web-5d8f', expected: { kind: 'ReplicaSet', name: 'web-5d8f' } },
  ])('$description: $input', ({ input, expected }) => {
    expect(parseTarget(input)).toEqual(expected);
  });

  it.each([
    { description: 'a Service', input: 'svc/web', expected: /not "svc"/ },
    { description: 'a bad name', input: 'deploy/Web_1', expected: /"Web_1" is not a Kubernetes name/ },
  ])('refuses $description', ({ input, expected }) => {
    expect(() => parseTarget(input)).toThrow(expected);
  });
});

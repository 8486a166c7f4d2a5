/**
 * Label and field selector grammar and matching (k8s.io/apimachinery labels
 * and fields), and the printer-column JSONPath subset.
 */
import { describe, expect, it } from 'vitest';
import { matchFields, matchLabels, parseFieldSelector, parseLabelSelector } from '../src/selectors.ts';
import { ApiError } from '../src/errors.ts';
import { compileJsonPath, evaluateJsonPath } from '../src/jsonpath.ts';
import { humanDuration } from '../src/table.ts';

const labels = { app: 'web', tier: 'front', version: '12', empty: '' };

describe('label selectors', () => {
  it.each([
    { input: '', expected: true },
    { input: 'app=web', expected: true },
    { input: 'app==web', expected: true },
    { input: 'app = web , tier = front', expected: true },
    { input: 'app!=web', expected: false },
    { input: 'missing!=x', expected: true },
    { input: 'app in (web,db)', expected: true },
    { input: 'app in (db)', expected: false },
    { input: 'app notin (db)', expected: true },
    { input: 'missing notin (db)', expected: true },
    { input: 'app', expected: true },
    { input: '!app', expected: false },
    { input: '!missing', expected: true },
    { input: 'empty=', expected: true },
    { input: 'empty in (,x)', expected: true },
    { input: 'version>10', expected: true },
    { input: 'version<10', expected: false },
    { input: 'example.com/team=x', expected: false },
  ])('$input → $expected', ({ input, expected }) => {
    expect(matchLabels(parseLabelSelector(input), labels)).toBe(expected);
  });

  it.each([
    { input: 'app in (web', reason: 'unterminated set' },
    { input: 'app=web,', reason: 'trailing comma' },
    { input: 'app=(web)', reason: 'parenthesis as value' },
    { input: 'app=we b', reason: 'space in value' },
    { input: 'bad key=x', reason: 'space in key' },
    { input: 'a>b', reason: 'non-integer for >' },
    { input: '-app=x', reason: 'key starting with -' },
  ])('refuses $input ($reason) with 400', ({ input }) => {
    let err: unknown;
    try {
      parseLabelSelector(input);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).code).toBe(400);
  });
});

describe('field selectors', () => {
  const fields = { 'metadata.name': 'a,b', 'spec.nodeName': 'node-1', 'status.phase': '' };
  it.each([
    { input: 'spec.nodeName=node-1', expected: true },
    { input: 'spec.nodeName==node-1', expected: true },
    { input: 'spec.nodeName!=node-1', expected: false },
    { input: 'status.phase=', expected: true },
    { input: 'metadata.name=a\\,b', expected: true },
    { input: 'metadata.name=a\\,b,spec.nodeName=node-2', expected: false },
  ])('$input → $expected', ({ input, expected }) => {
    expect(matchFields(parseFieldSelector(input), fields)).toBe(expected);
  });

  it('refuses a term without an operator', () => {
    expect(() => parseFieldSelector('spec.nodeName')).toThrow(ApiError);
  });
});

describe('printer column JSONPath', () => {
  const obj = {
    metadata: { name: 'x', labels: { 'app.kubernetes.io/name': 'podtap' } },
    spec: { ports: [{ port: 80, name: 'http' }, { port: 443, name: 'https' }] },
    status: {
      conditions: [
        { type: 'Ready', status: 'False', reason: 'NoPods' },
        { type: 'Degraded', status: 'True' },
      ],
    },
  };
  it.each([
    { input: '.metadata.name', expected: ['x'] },
    { input: '.status.conditions[?(@.type=="Ready")].status', expected: ['False'] },
    { input: ".status.conditions[?(@.type=='Degraded')].status", expected: ['True'] },
    { input: '.status.conditions[?(@.type!="Ready")].type', expected: ['Degraded'] },
    { input: '.spec.ports[0].port', expected: [80] },
    { input: '.spec.ports[-1].name', expected: ['https'] },
    { input: '.spec.ports[*].port', expected: [80, 443] },
    { input: '.spec.ports[?(@.port > 100)].name', expected: ['https'] },
    { input: ".metadata.labels['app.kubernetes.io/name']", expected: ['podtap'] },
    { input: '..port', expected: [80, 443] },
    { input: '.status.missing', expected: [] },
    { input: '{.spec.ports[0:1].name}', expected: ['http'] },
  ])('$input', ({ input, expected }) => {
    expect(evaluateJsonPath(compileJsonPath(input), obj)).toEqual(expected);
  });
});

describe('ages', () => {
  it.each([
    { input: 5_000, expected: '5s' },
    { input: 119_000, expected: '119s' },
    { input: 150_000, expected: '2m30s' },
    { input: 600_000, expected: '10m' },
    { input: 3 * 3600_000 + 20 * 60_000, expected: '3h20m' },
    { input: 30 * 3600_000, expected: '30h' },
    { input: 3 * 86400_000 + 5 * 3600_000, expected: '3d5h' },
    { input: 400 * 86400_000, expected: '400d' },
    { input: 3 * 365 * 86400_000 + 10 * 86400_000, expected: '3y10d' },
  ])('$input ms → $expected', ({ input, expected }) => {
    expect(humanDuration(input)).toBe(expected);
  });
});

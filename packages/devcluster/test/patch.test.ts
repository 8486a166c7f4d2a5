/**
 * Patch semantics: JSON merge patch, strategic merge patch with the
 * directives kubectl sends, and field ownership / server-side apply.
 */
import { describe, expect, it } from 'vitest';
import { jsonMergePatch, strategicMergePatch, builtinListMeta } from '../src/patch.ts';
import { decodeFieldsV1, encodeFieldsV1, fieldSet, fieldsTree, serverSideApply, trackUpdate } from '../src/managed.ts';
import { ApiError } from '../src/errors.ts';

const podSpec = {
  spec: {
    containers: [
      { name: 'a', image: 'a:1', env: [{ name: 'X', value: '1' }, { name: 'Y', value: '2' }], ports: [{ containerPort: 80, protocol: 'TCP' }] },
      { name: 'b', image: 'b:1' },
    ],
    volumes: [{ name: 'v1', emptyDir: {} }],
    tolerations: [{ key: 't1' }],
  },
  metadata: { finalizers: ['f1'], labels: { a: '1' } },
};

describe('JSON merge patch (RFC 7386)', () => {
  it.each([
    { description: 'sets and removes keys', target: { a: 1, b: 2 }, patch: { a: null, c: 3 }, expected: { b: 2, c: 3 } },
    { description: 'merges nested objects', target: { o: { x: 1, y: 2 } }, patch: { o: { y: null, z: 3 } }, expected: { o: { x: 1, z: 3 } } },
    { description: 'replaces lists whole', target: { l: [1, 2, 3] }, patch: { l: [4] }, expected: { l: [4] } },
    { description: 'replaces a scalar by an object', target: { a: 1 }, patch: { a: { b: 1 } }, expected: { a: { b: 1 } } },
  ])('$description', ({ target, patch, expected }) => {
    expect(jsonMergePatch(target, patch)).toEqual(expected);
  });
});

describe('strategic merge patch', () => {
  it.each([
    {
      description: 'merges containers by name and env by name',
      patch: { spec: { containers: [{ name: 'a', env: [{ name: 'Z', value: '3' }] }] } },
      check: (r: any) => {
        expect(r.spec.containers.map((c: any) => c.name)).toEqual(['a', 'b']);
        expect(r.spec.containers[0].env).toEqual([{ name: 'X', value: '1' }, { name: 'Y', value: '2' }, { name: 'Z', value: '3' }]);
        expect(r.spec.containers[0].image).toBe('a:1');
      },
    },
    {
      description: '$patch: delete removes a list item by key',
      patch: { spec: { containers: [{ name: 'b', $patch: 'delete' }] } },
      check: (r: any) => expect(r.spec.containers.map((c: any) => c.name)).toEqual(['a']),
    },
    {
      description: '$patch: replace replaces a map',
      patch: { spec: { volumes: [{ name: 'v1', hostPath: { path: '/x' }, $patch: 'replace' }] } },
      check: (r: any) => expect(r.spec.volumes).toEqual([{ name: 'v1', hostPath: { path: '/x' } }]),
    },
    {
      description: 'lists without a merge key are replaced',
      patch: { spec: { tolerations: [{ key: 't2' }] } },
      check: (r: any) => expect(r.spec.tolerations).toEqual([{ key: 't2' }]),
    },
    {
      description: '$setElementOrder orders the merged list',
      patch: { spec: { $setElementOrder: undefined, '$setElementOrder/containers': [{ name: 'b' }, { name: 'a' }], containers: [{ name: 'b', image: 'b:2' }] } },
      check: (r: any) => expect(r.spec.containers.map((c: any) => `${c.name}=${c.image}`)).toEqual(['b=b:2', 'a=a:1']),
    },
    {
      description: 'finalizers merge as a set; $deleteFromPrimitiveList removes',
      patch: { metadata: { finalizers: ['f2'], '$deleteFromPrimitiveList/finalizers': ['f1'] } },
      check: (r: any) => expect(r.metadata.finalizers).toEqual(['f2']),
    },
    {
      description: 'null deletes a field',
      patch: { metadata: { labels: { a: null, b: '2' } } },
      check: (r: any) => expect(r.metadata.labels).toEqual({ b: '2' }),
    },
    {
      description: 'container ports merge by containerPort',
      patch: { spec: { containers: [{ name: 'a', ports: [{ containerPort: 80, name: 'http' }, { containerPort: 9090 }] }] } },
      check: (r: any) => expect(r.spec.containers[0].ports).toEqual([{ containerPort: 80, protocol: 'TCP', name: 'http' }, { containerPort: 9090 }]),
    },
  ])('$description', ({ patch, check }) => {
    const clean = JSON.parse(JSON.stringify(patch)) as unknown;
    check(strategicMergePatch(podSpec, clean, builtinListMeta));
  });
});

describe('field ownership', () => {
  const obj = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', labels: { a: '1' }, finalizers: ['f'] }, spec: podSpec.spec };

  it('encodes FieldsV1 as kube does and decodes it back', () => {
    const set = fieldSet(obj, builtinListMeta);
    const encoded = encodeFieldsV1(set);
    expect(encoded).toMatchObject({
      'f:metadata': { 'f:labels': { 'f:a': {} }, 'f:finalizers': { 'v:"f"': {} } },
      'f:spec': { 'f:containers': { 'k:{"name":"a"}': { '.': {}, 'f:image': {}, 'f:env': { 'k:{"name":"X"}': { '.': {}, 'f:name': {}, 'f:value': {} } } } } },
    });
    expect(decodeFieldsV1(encoded)).toEqual(set);
    expect(fieldsTree(obj, builtinListMeta)).toEqual(encoded);
  });

  it('gives changed fields to the updating manager', () => {
    const created = { ...obj, metadata: { ...obj.metadata, managedFields: trackUpdate(undefined, obj, { manager: 'creator', apiVersion: 'v1', lookup: builtinListMeta }) } };
    const changed = structuredClone(created);
    changed.metadata.labels = { a: '2' };
    const mf = trackUpdate(created, changed, { manager: 'editor', apiVersion: 'v1', lookup: builtinListMeta });
    expect(mf.map((e) => e.manager)).toEqual(['creator', 'editor']);
    expect(mf[1]!.fieldsV1).toEqual({ 'f:metadata': { 'f:labels': { 'f:a': {} } } });
    expect((mf[0]!.fieldsV1['f:metadata'] as Record<string, unknown>)['f:labels']).toBeUndefined();
  });

  it('apply conflicts on a field another manager set to another value, shares an equal one, and force takes it', () => {
    const live = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' }, data: { a: '1', b: '2' } };
    const withOwner = { ...live, metadata: { ...live.metadata, managedFields: trackUpdate(undefined, live, { manager: 'ctl', apiVersion: 'v1', lookup: builtinListMeta }) } };
    const opts = { manager: 'me', apiVersion: 'v1', force: false, lookup: builtinListMeta };
    expect(serverSideApply(withOwner, { metadata: {}, data: { a: '1' } }, opts).object.data).toEqual({ a: '1', b: '2' });
    let err: unknown;
    try {
      serverSideApply(withOwner, { metadata: {}, data: { a: 'x' } }, opts);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).code).toBe(409);
    expect((err as ApiError).message).toBe('Apply failed with 1 conflict: conflict with "ctl" using v1: .data.a');
    const forced = serverSideApply(withOwner, { metadata: {}, data: { a: 'x' } }, { ...opts, force: true });
    expect(forced.object.data).toEqual({ a: 'x', b: '2' });
    expect(forced.managedFields.map((e) => `${e.manager}/${e.operation}`)).toEqual(['ctl/Update', 'me/Apply']);
  });
});

/**
 * Request bodies in Kubernetes' protobuf encoding, for the built-in kinds
 * `kubectl create <kind>` sends that way (its typed clients use
 * `application/vnd.kubernetes.protobuf`): Namespace, ConfigMap, Secret,
 * ServiceAccount, Service, Deployment, Role/ClusterRole and their
 * bindings, PriorityClass, PodDisruptionBudget.
 *
 * The envelope is "k8s\0" + runtime.Unknown{typeMeta, raw}; `raw` is the
 * object, decoded here with the field numbers of k8s.io/api's
 * generated.proto for the fields those generators set (others are skipped).
 * Go's encoder writes every non-pointer field, so zero scalars are dropped
 * again as JSON's omitempty would, except where the JSON field has no
 * omitempty (`keep`).
 */
import { Buffer } from 'node:buffer';
import { unsupportedMediaType, badRequest } from './errors.ts';

type Scalar = 'string' | 'bool' | 'int' | 'bytes' | 'time' | 'quantity' | 'intOrString';
type MapOf = { map: Scalar | Msg };
type Field = { name: string; type: Scalar | Msg | MapOf; repeated?: boolean; keep?: boolean };
interface Msg {
  [field: number]: Field;
}

function isMap(t: Msg | MapOf): t is MapOf {
  return (t as MapOf).map !== undefined;
}

const f = (name: string, type: Field['type'], opts: { repeated?: boolean; keep?: boolean } = {}): Field => ({ name, type, ...opts });

const ownerReference: Msg = {
  1: f('kind', 'string'),
  3: f('name', 'string'),
  4: f('uid', 'string'),
  5: f('apiVersion', 'string'),
  6: f('controller', 'bool'),
  7: f('blockOwnerDeletion', 'bool'),
};

const objectMeta: Msg = {
  1: f('name', 'string'),
  2: f('generateName', 'string'),
  3: f('namespace', 'string'),
  5: f('uid', 'string'),
  6: f('resourceVersion', 'string'),
  7: f('generation', 'int'),
  8: f('creationTimestamp', 'time'),
  9: f('deletionTimestamp', 'time'),
  10: f('deletionGracePeriodSeconds', 'int'),
  11: f('labels', { map: 'string' }),
  12: f('annotations', { map: 'string' }),
  13: f('ownerReferences', ownerReference, { repeated: true }),
  14: f('finalizers', 'string', { repeated: true }),
};

const labelSelectorRequirement: Msg = { 1: f('key', 'string'), 2: f('operator', 'string'), 3: f('values', 'string', { repeated: true }) };
const labelSelector: Msg = { 1: f('matchLabels', { map: 'string' }), 2: f('matchExpressions', labelSelectorRequirement, { repeated: true }) };
const objectReference: Msg = {
  1: f('kind', 'string'),
  2: f('namespace', 'string'),
  3: f('name', 'string'),
  4: f('uid', 'string'),
  5: f('apiVersion', 'string'),
  6: f('resourceVersion', 'string'),
  7: f('fieldPath', 'string'),
};
const localObjectReference: Msg = { 1: f('name', 'string') };

const containerPort: Msg = { 1: f('name', 'string'), 2: f('hostPort', 'int'), 3: f('containerPort', 'int', { keep: true }), 4: f('protocol', 'string'), 5: f('hostIP', 'string') };
const envVar: Msg = { 1: f('name', 'string'), 2: f('value', 'string') };
const resources: Msg = { 1: f('limits', { map: 'quantity' }), 2: f('requests', { map: 'quantity' }) };
const container: Msg = {
  1: f('name', 'string'),
  2: f('image', 'string'),
  3: f('command', 'string', { repeated: true }),
  4: f('args', 'string', { repeated: true }),
  5: f('workingDir', 'string'),
  6: f('ports', containerPort, { repeated: true }),
  7: f('env', envVar, { repeated: true }),
  8: f('resources', resources),
  13: f('terminationMessagePath', 'string'),
  14: f('imagePullPolicy', 'string'),
  16: f('stdin', 'bool'),
  17: f('stdinOnce', 'bool'),
  18: f('tty', 'bool'),
  20: f('terminationMessagePolicy', 'string'),
};
const podSpec: Msg = {
  2: f('containers', container, { repeated: true }),
  3: f('restartPolicy', 'string'),
  4: f('terminationGracePeriodSeconds', 'int'),
  5: f('activeDeadlineSeconds', 'int'),
  6: f('dnsPolicy', 'string'),
  7: f('nodeSelector', { map: 'string' }),
  8: f('serviceAccountName', 'string'),
  10: f('nodeName', 'string'),
  11: f('hostNetwork', 'bool'),
  15: f('imagePullSecrets', localObjectReference, { repeated: true }),
  19: f('schedulerName', 'string'),
  20: f('initContainers', container, { repeated: true }),
  24: f('priorityClassName', 'string'),
};
const podTemplateSpec: Msg = { 1: f('metadata', objectMeta), 2: f('spec', podSpec) };

const rollingUpdateDeployment: Msg = { 1: f('maxUnavailable', 'intOrString'), 2: f('maxSurge', 'intOrString') };
const deploymentStrategy: Msg = { 1: f('type', 'string'), 2: f('rollingUpdate', rollingUpdateDeployment) };
const deploymentSpec: Msg = {
  1: f('replicas', 'int', { keep: true }),
  2: f('selector', labelSelector),
  3: f('template', podTemplateSpec),
  4: f('strategy', deploymentStrategy),
  5: f('minReadySeconds', 'int'),
  6: f('revisionHistoryLimit', 'int', { keep: true }),
  7: f('paused', 'bool'),
  9: f('progressDeadlineSeconds', 'int', { keep: true }),
};

const servicePort: Msg = {
  1: f('name', 'string'),
  2: f('protocol', 'string'),
  3: f('port', 'int', { keep: true }),
  4: f('targetPort', 'intOrString'),
  5: f('nodePort', 'int'),
  6: f('appProtocol', 'string'),
};
const serviceSpec: Msg = {
  1: f('ports', servicePort, { repeated: true }),
  2: f('selector', { map: 'string' }),
  3: f('clusterIP', 'string'),
  4: f('type', 'string'),
  5: f('externalIPs', 'string', { repeated: true }),
  7: f('sessionAffinity', 'string'),
  10: f('externalName', 'string'),
  11: f('externalTrafficPolicy', 'string'),
  13: f('publishNotReadyAddresses', 'bool'),
  17: f('ipFamilyPolicy', 'string'),
  18: f('clusterIPs', 'string', { repeated: true }),
  19: f('ipFamilies', 'string', { repeated: true }),
  22: f('internalTrafficPolicy', 'string'),
};

const policyRule: Msg = {
  1: f('verbs', 'string', { repeated: true, keep: true }),
  2: f('apiGroups', 'string', { repeated: true }),
  3: f('resources', 'string', { repeated: true }),
  4: f('resourceNames', 'string', { repeated: true }),
  5: f('nonResourceURLs', 'string', { repeated: true }),
};
const subject: Msg = { 1: f('kind', 'string'), 2: f('apiGroup', 'string'), 3: f('name', 'string'), 4: f('namespace', 'string') };
const roleRef: Msg = { 1: f('apiGroup', 'string', { keep: true }), 2: f('kind', 'string'), 3: f('name', 'string') };

/** Top-level kinds by apiVersion/kind. */
const kinds: Record<string, Msg> = {
  'v1/Namespace': { 1: f('metadata', objectMeta), 2: f('spec', { 1: f('finalizers', 'string', { repeated: true }) }) },
  'v1/ConfigMap': { 1: f('metadata', objectMeta), 2: f('data', { map: 'string' }), 3: f('binaryData', { map: 'bytes' }), 4: f('immutable', 'bool') },
  'v1/Secret': { 1: f('metadata', objectMeta), 2: f('data', { map: 'bytes' }), 3: f('type', 'string'), 4: f('stringData', { map: 'string' }), 5: f('immutable', 'bool') },
  'v1/ServiceAccount': {
    1: f('metadata', objectMeta),
    2: f('secrets', objectReference, { repeated: true }),
    3: f('imagePullSecrets', localObjectReference, { repeated: true }),
    4: f('automountServiceAccountToken', 'bool'),
  },
  'v1/Service': { 1: f('metadata', objectMeta), 2: f('spec', serviceSpec) },
  'apps/v1/Deployment': { 1: f('metadata', objectMeta), 2: f('spec', deploymentSpec) },
  'rbac.authorization.k8s.io/v1/Role': { 1: f('metadata', objectMeta), 2: f('rules', policyRule, { repeated: true }) },
  'rbac.authorization.k8s.io/v1/ClusterRole': {
    1: f('metadata', objectMeta),
    2: f('rules', policyRule, { repeated: true }),
    3: f('aggregationRule', { 1: f('clusterRoleSelectors', labelSelector, { repeated: true }) }),
  },
  'rbac.authorization.k8s.io/v1/RoleBinding': { 1: f('metadata', objectMeta), 2: f('subjects', subject, { repeated: true }), 3: f('roleRef', roleRef) },
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': { 1: f('metadata', objectMeta), 2: f('subjects', subject, { repeated: true }), 3: f('roleRef', roleRef) },
  'scheduling.k8s.io/v1/PriorityClass': {
    1: f('metadata', objectMeta),
    2: f('value', 'int', { keep: true }),
    3: f('globalDefault', 'bool'),
    4: f('description', 'string'),
    5: f('preemptionPolicy', 'string'),
  },
  'policy/v1/PodDisruptionBudget': {
    1: f('metadata', objectMeta),
    2: f('spec', { 1: f('minAvailable', 'intOrString'), 2: f('selector', labelSelector), 3: f('maxUnavailable', 'intOrString'), 4: f('unhealthyPodEvictionPolicy', 'string') }),
  },
};

export const PROTOBUF = 'application/vnd.kubernetes.protobuf';

// ---- wire format -------------------------------------------------------------

class Reader {
  pos = 0;
  readonly buf: Buffer;
  readonly end: number;
  constructor(buf: Buffer, start = 0, end = buf.length) {
    this.buf = buf;
    this.pos = start;
    this.end = end;
  }
  done(): boolean {
    return this.pos >= this.end;
  }
  varint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (this.pos >= this.end) throw new Error('truncated varint');
      const b = this.buf[this.pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
      if (shift > 70n) throw new Error('varint too long');
    }
  }
  bytes(): Buffer {
    const len = Number(this.varint());
    if (this.pos + len > this.end) throw new Error('truncated field');
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) this.bytes();
    else if (wire === 5) this.pos += 4;
    else throw new Error(`unsupported wire type ${wire}`);
  }
}

function signed(v: bigint): number {
  return Number(BigInt.asIntN(64, v));
}

function decodeScalar(t: Scalar, r: Reader): unknown {
  switch (t) {
    case 'bool':
      return r.varint() !== 0n;
    case 'int':
      return signed(r.varint());
    case 'string':
      return r.bytes().toString('utf8');
    case 'bytes':
      return Buffer.from(r.bytes()).toString('base64');
    case 'quantity': {
      const m = decodeMessage(r.bytes(), { 1: f('string', 'string') });
      return m.string ?? '';
    }
    case 'intOrString': {
      const m = decodeMessage(r.bytes(), { 1: f('type', 'int', { keep: true }), 2: f('intVal', 'int', { keep: true }), 3: f('strVal', 'string') });
      return m.type === 1 ? (m.strVal ?? '') : (m.intVal ?? 0);
    }
    case 'time': {
      const m = decodeMessage(r.bytes(), { 1: f('seconds', 'int', { keep: true }), 2: f('nanos', 'int') });
      // metav1.Time marshals the zero time as no bytes at all; in JSON it is null, so absent.
      if (m.seconds === undefined) return undefined;
      const seconds = Number(m.seconds);
      return new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
    }
  }
}

function isZero(v: unknown): boolean {
  return v === '' || v === false || v === 0 || v === undefined || (Array.isArray(v) && v.length === 0);
}

function decodeMessage(buf: Buffer, schema: Msg): Record<string, unknown> {
  const r = new Reader(buf);
  const out: Record<string, unknown> = {};
  while (!r.done()) {
    const tag = Number(r.varint());
    const num = tag >>> 3;
    const wire = tag & 7;
    const field = schema[num];
    if (!field) {
      r.skip(wire);
      continue;
    }
    let value: unknown;
    const t = field.type;
    if (typeof t === 'string') value = decodeScalar(t, r);
    else if (isMap(t)) {
      // A map is a repeated entry message {key = 1; value = 2}; an empty value may be left out.
      const entry = decodeMessage(r.bytes(), { 1: f('key', 'string', { keep: true }), 2: f('value', t.map, { keep: true }) });
      const m = (out[field.name] ??= {}) as Record<string, unknown>;
      m[String(entry.key ?? '')] = entry.value ?? (typeof t.map === 'string' ? '' : {});
      continue;
    } else value = decodeMessage(r.bytes(), t);
    if (field.repeated) {
      if (value === undefined) continue;
      ((out[field.name] ??= []) as unknown[]).push(value);
    } else if (value !== undefined) {
      out[field.name] = value;
    }
  }
  for (const [k, v] of Object.entries(out)) {
    const field = Object.values(schema).find((x: Field) => x.name === k) as Field | undefined;
    if (field && !field.keep && typeof field.type === 'string' && isZero(v)) delete out[k];
  }
  return out;
}

/** Decodes a protobuf request body of a supported kind to its JSON shape. */
export function decodeProtobufObject(body: Buffer, expected: { apiVersion: string; kind: string }): Record<string, unknown> {
  if (body.length < 4 || body.subarray(0, 4).toString('latin1') !== 'k8s\u0000') {
    throw badRequest('protobuf body does not start with the "k8s\\0" envelope prefix');
  }
  let unknown: Record<string, unknown>;
  let raw: Buffer | undefined;
  try {
    const r = new Reader(body, 4);
    unknown = {};
    while (!r.done()) {
      const tag = Number(r.varint());
      const num = tag >>> 3;
      if (num === 1) unknown.typeMeta = decodeMessage(r.bytes(), { 1: f('apiVersion', 'string'), 2: f('kind', 'string') });
      else if (num === 2) raw = Buffer.from(r.bytes());
      else r.skip(tag & 7);
    }
  } catch (err) {
    throw badRequest(`cannot decode protobuf envelope: ${(err as Error).message}`);
  }
  const tm = (unknown.typeMeta ?? {}) as { apiVersion?: string; kind?: string };
  const apiVersion = tm.apiVersion || expected.apiVersion;
  const kind = tm.kind || expected.kind;
  const schema = kinds[`${apiVersion}/${kind}`];
  if (!schema) {
    throw unsupportedMediaType(['application/json', 'application/yaml', `${PROTOBUF} (for ${Object.keys(kinds).map((k) => k.split('/').pop()).join(', ')})`]);
  }
  try {
    const obj = decodeMessage(raw ?? Buffer.alloc(0), schema);
    return { apiVersion, kind, ...obj };
  } catch (err) {
    throw badRequest(`cannot decode ${kind} from protobuf: ${(err as Error).message}`);
  }
}

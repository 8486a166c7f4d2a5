/**
 * Test harness: an embedded API on 127.0.0.1 (ephemeral port), a kubeconfig
 * for it in a temp dir, @kubernetes/client-node clients, and the real kubectl
 * with its discovery cache kept in the same temp dir.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import {
  ApiextensionsV1Api,
  AppsV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  KubernetesObjectApi,
} from '@kubernetes/client-node';
import { startApiServer, writeKubeconfig, type ApiServer, type StartOptions } from '../src/index.ts';

export interface Cluster {
  server: ApiServer;
  url: string;
  dir: string;
  kubeconfig: string;
  kc: KubeConfig;
  core: CoreV1Api;
  apps: AppsV1Api;
  coordination: CoordinationV1Api;
  ext: ApiextensionsV1Api;
  custom: CustomObjectsApi;
  objects: KubernetesObjectApi;
  close(): Promise<void>;
}

export async function startCluster(opts: StartOptions = {}): Promise<Cluster> {
  const server = await startApiServer({ port: 0, host: '127.0.0.1', ...opts });
  const dir = await mkdtemp(join(tmpdir(), 'podtap-devcluster-'));
  const kubeconfig = join(dir, 'kubeconfig');
  await writeKubeconfig(kubeconfig, server.url);
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  return {
    server,
    url: server.url,
    dir,
    kubeconfig,
    kc,
    core: kc.makeApiClient(CoreV1Api),
    apps: kc.makeApiClient(AppsV1Api),
    coordination: kc.makeApiClient(CoordinationV1Api),
    ext: kc.makeApiClient(ApiextensionsV1Api),
    custom: kc.makeApiClient(CustomObjectsApi),
    objects: KubernetesObjectApi.makeApiClient(kc),
    async close() {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface KubectlResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export async function kubectl(c: Cluster, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<KubectlResult> {
  const r = await execa('kubectl', args, {
    env: { KUBECONFIG: c.kubeconfig, KUBECACHEDIR: join(c.dir, 'kube-cache') },
    input: opts.input,
    reject: false,
    stripFinalNewline: false,
    timeout: opts.timeoutMs ?? 20_000,
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

export async function writeManifest(c: Cluster, name: string, text: string): Promise<string> {
  const p = join(c.dir, name);
  await writeFile(p, text);
  return p;
}

/** Polls until `check` returns without throwing, or fails with its last error. */
export async function eventually<T>(check: () => T | Promise<T>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** A raw HTTP call to the server, for protocol details clients hide. */
export async function http(
  c: Cluster,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; json: any; text: string }> {
  const init: RequestInit = { method, headers: { 'Content-Type': 'application/json', ...headers } };
  if (body !== undefined) init.body = typeof body === 'string' ? body : JSON.stringify(body);
  const res = await fetch(c.url + path, init);
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, json, text };
}

/** The test CRD: a namespaced Widget with the CEL rule shapes podtap's CRDs use. */
export const widgetCrd = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'widgets.test.podtap.io' },
  spec: {
    group: 'test.podtap.io',
    scope: 'Namespaced',
    names: { plural: 'widgets', singular: 'widget', kind: 'Widget', listKind: 'WidgetList', shortNames: ['wd'], categories: ['podtap'] },
    versions: [
      {
        name: 'v1',
        served: true,
        storage: true,
        subresources: { status: {} },
        selectableFields: [{ jsonPath: '.spec.nodeName' }],
        additionalPrinterColumns: [
          { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
          { name: 'Direction', type: 'string', jsonPath: '.spec.direction' },
          { name: 'Packets', type: 'integer', jsonPath: '.status.packets' },
          { name: 'Node', type: 'string', jsonPath: '.spec.nodeName', priority: 1 },
          { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
        ],
        schema: {
          openAPIV3Schema: {
            type: 'object',
            required: ['spec'],
            properties: {
              spec: {
                type: 'object',
                properties: {
                  nodeName: { type: 'string', maxLength: 63 },
                  direction: { type: 'string', enum: ['Ingress', 'Egress', 'Both'], default: 'Both' },
                  snapLength: { type: 'integer', minimum: 0, maximum: 65535, default: 0 },
                  mtu: { type: 'integer', default: 0, 'x-kubernetes-validations': [{ rule: 'self == 0 || (self >= 1280 && self <= 9216)', message: 'mtu must be 0 or 1280..9216' }] },
                  ports: {
                    type: 'array',
                    maxItems: 8,
                    items: {
                      type: 'object',
                      required: ['port'],
                      'x-kubernetes-validations': [
                        { rule: '!has(self.endPort) || self.endPort >= self.port', message: 'endPort must be greater than or equal to port', fieldPath: '.endPort' },
                      ],
                      properties: {
                        port: { type: 'integer', minimum: 1, maximum: 65535 },
                        endPort: { type: 'integer', minimum: 1, maximum: 65535 },
                      },
                    },
                  },
                  cidrs: {
                    type: 'array',
                    items: { type: 'string', 'x-kubernetes-validations': [{ rule: 'isCIDR(self)', message: 'must be a CIDR such as 10.0.0.0/8' }] },
                  },
                  collector: {
                    type: 'object',
                    'x-kubernetes-validations': [{ rule: 'has(self.address) != has(self.service)', message: 'set exactly one of address or service' }],
                    properties: {
                      address: { type: 'string', 'x-kubernetes-validations': [{ rule: 'isIP(self)', message: 'must be an IP address' }] },
                      service: { type: 'object', properties: { name: { type: 'string' }, namespace: { type: 'string' } } },
                    },
                  },
                  selector: {
                    type: 'object',
                    'x-kubernetes-validations': [
                      {
                        rule: "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)",
                        message: 'values must be set for In and NotIn, and empty for Exists and DoesNotExist',
                        fieldPath: '.values',
                      },
                    ],
                    properties: {
                      operator: { type: 'string', enum: ['In', 'NotIn', 'Exists', 'DoesNotExist'] },
                      values: { type: 'array', items: { type: 'string' } },
                    },
                  },
                  extra: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
                },
              },
              status: {
                type: 'object',
                properties: {
                  packets: { type: 'integer' },
                  conditions: {
                    type: 'array',
                    'x-kubernetes-list-type': 'map',
                    'x-kubernetes-list-map-keys': ['type'],
                    items: { type: 'object', required: ['type', 'status'], properties: { type: { type: 'string' }, status: { type: 'string' }, reason: { type: 'string' } } },
                  },
                },
              },
            },
          },
        },
      },
    ],
  },
};

export const WIDGETS = { group: 'test.podtap.io', version: 'v1', plural: 'widgets' } as const;

export function widget(name: string, spec: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  return { apiVersion: 'test.podtap.io/v1', kind: 'Widget', metadata: { name, ...extra }, spec };
}

/** Creates the Widget CRD and waits until the API serves it. */
export async function installWidgets(c: Cluster): Promise<void> {
  // Raw JSON, not ApiextensionsV1Api: client-node's typed serializer drops
  // `default` (its model calls it `_default`) from a plain-object schema.
  const r = await http(c, 'POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', widgetCrd);
  if (r.status !== 201) throw new Error(`creating the Widget CRD: ${r.status} ${r.text}`);
  await eventually(async () => {
    const r = await http(c, 'GET', '/apis/test.podtap.io/v1');
    if (r.status !== 200) throw new Error(`widgets not served yet: ${r.status}`);
  });
}

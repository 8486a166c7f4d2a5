/** The value sets every packaging test renders: the defaults and two installs unlike them. */
import type { RenderOptions } from './render.ts';

export interface ValueSet {
  description: string;
  options: RenderOptions;
  release: { name: string; namespace: string };
}

export const VALUE_SETS: ValueSet[] = [
  { description: 'default values', options: {}, release: { name: 'podtap', namespace: 'podtap-system' } },
  {
    description: 'metrics with a ServiceMonitor, custom resources, priority and nodeSelector, no netns fallback, Kubernetes 1.29',
    release: { name: 'podtap', namespace: 'podtap-system' },
    options: {
      apiVersions: ['monitoring.coreos.com/v1'],
      extraArgs: ['-kube-version', 'v1.29.4'],
      values: {
        image: { repository: 'registry.example.com/podtap', digest: `sha256:${'ab'.repeat(32)}` },
        commonLabels: { team: 'netops' },
        logLevel: 'debug',
        priorityClass: { create: false, name: 'system-node-critical' },
        metrics: {
          enabled: true,
          serviceMonitor: { enabled: true, interval: '15s', labels: { release: 'prometheus' } },
          prometheusRule: { enabled: true, labels: { release: 'prometheus' }, lossRatio: 0.05 },
          dashboard: { enabled: true },
        },
        rbac: { aggregateToEdit: true },
        controller: {
          replicas: 3,
          resources: { requests: { cpu: '200m', memory: '256Mi' }, limits: { cpu: '2', memory: '1Gi' } },
          nodeSelector: { 'node-role.kubernetes.io/control-plane': '' },
          tolerations: [{ key: 'node-role.kubernetes.io/control-plane', operator: 'Exists', effect: 'NoSchedule' }],
        },
        agent: {
          netnsFallback: false,
          resources: { requests: { cpu: '250m', memory: '256Mi' }, limits: { cpu: '4', memory: '2Gi' } },
          nodeSelector: { 'podtap.io/capture': 'true' },
          tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'capture', effect: 'NoSchedule' }],
          podAnnotations: { 'example.com/owner': 'netops' },
        },
        collector: {
          tunnel: 'vxlan',
          tunnelPort: 4789,
          listenAddress: '[::]',
          workers: 4,
          retention: { size: '180GiB', age: '7d' },
          persistence: { storageClass: 'fast-ssd', size: '200Gi' },
          networkPolicy: {
            nodeCIDRs: ['10.20.0.0/16', 'fd00:20::/64'], httpFrom: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }],
            apiServerTo: [{ ipBlock: { cidr: '10.20.0.10/32' } }], apiServerPorts: [6443],
          },
        },
      },
    },
  },
  {
    description: 'captures on a hostPath, no NetworkPolicy, an existing token Secret, no Kubernetes readers, bpffs mounted by the chart, other release name and namespace, more destinations',
    release: { name: 'capture', namespace: 'tools' },
    options: {
      extraArgs: ['-name', 'capture', '-namespace', 'tools'],
      values: {
        fullnameOverride: 'netcap',
        // as a subchart: the parent's global values reach it
        global: { imageRegistry: 'registry.example.com' },
        agent: { mountBpffs: true, compileCacheHostPath: '', netnsDir: '/run/netns', terminationGracePeriodSeconds: 90 },
        controller: { replicas: 1 },
        // the admin allows a shared collector elsewhere and a lab network by address
        destinations: { services: ['observability/pcap-sink'], cidrs: ['10.20.0.0/16', '2001:db8::/32'] },
        collector: {
          // only the install's api-token reads captures: no API access at all
          auth: { kubernetes: false },
          acceptAssignedOnly: false,
          token: { create: false, existingSecret: 'my-collector-token' },
          persistence: { hostPath: '/var/lib/podtap/captures' },
          networkPolicy: { enabled: false },
          nodeSelector: { 'kubernetes.io/hostname': 'capture-node-1' },
          extraEnv: [{ name: 'TZ', value: 'UTC' }],
          extraVolumes: [{ name: 'corp-ca', configMap: { name: 'corp-ca' } }],
          extraVolumeMounts: [{ name: 'corp-ca', mountPath: '/etc/ssl/corp', readOnly: true }],
        },
      },
    },
  },
];

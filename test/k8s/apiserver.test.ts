/**
 * The real kube-apiserver (test/helpers/apiserver.ts) as the judge of the
 * CRDs, and the embedded stand-in held to the same answers: every case of the shared policy table is sent to it (server-side dry
 * run). A valid policy is admitted and stored exactly as zod parses it
 * (defaults included); an invalid one is refused naming zod's field path, and
 * with zod's message where a CEL rule of the CRD catches it — the same answers
 * test/unit/api/cel.test.ts gets from its model of the API server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCrds, type JsonSchema } from '../../src/api/crd.ts';
import { SniffPolicySchema } from '../../src/api/sniffpolicy.ts';
import { BACKENDS, startBackend, type KubeBackend } from '../helpers/kube.ts';
import { applyDefaults, celViolations } from '../unit/api/k8s-schema.ts';
import { policy, policyCases } from '../unit/api/policy-cases.ts';

const policySchema = (buildCrds()[0] as { spec: { versions: { schema: { openAPIV3Schema: JsonSchema } }[] } }).spec.versions[0]!.schema.openAPIV3Schema;

describe.each(BACKENDS)('the SniffPolicy CRD on %s', (kind) => {
  let api: KubeBackend;

  beforeAll(async () => {
    api = await startBackend(kind);
    await api.installCrds();
    await api.kubectl(['create', 'namespace', 'demo'], { reject: true });
  }, 180_000);
  afterAll(async () => {
    await api?.stop();
  });

  it.each(policyCases)('$description', async ({ input, expected }) => {
    const r = await api.kubectl(['create', '--dry-run=server', '-o', 'json', '-f', '-'], { input: JSON.stringify(policy(input)) });
    if (expected === 'valid') {
      expect(r.stderr).toBe('');
      expect(JSON.parse(r.stdout).spec).toEqual(SniffPolicySchema.parse(policy(input)).spec);
      return;
    }
    expect(r.exitCode, r.stdout).not.toBe(0);
    // schema and CEL failures are "is invalid"; an unknown field fails kubectl's
    // strict field validation, which the server does: "strict decoding error"
    expect(r.stderr).toMatch(/is invalid|strict decoding error: unknown field/);
    expect(r.stderr).toContain(expected.path);
    // where a CEL rule decides, the server's words are zod's
    const byCel = celViolations(policySchema, applyDefaults(policySchema, policy(input))).length > 0;
    if (byCel) {
      expect(r.stderr).toContain(`${expected.path}: Invalid value: `);
      expect(r.stderr).toContain(expected.message);
    }
  });

  // (the embedded stand-in authenticates nobody: by design, not a difference to fix)
  if (kind === 'kube-apiserver') it('a ServiceAccount has no rights until RBAC grants them', async () => {
    const kc = await api.real!.kubeconfigFor('tenant', 'app');
    const r = await api.kubectl(['get', 'sniffpolicies', '-n', 'demo'], { kubeconfig: kc });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain('system:serviceaccount:tenant:app');
    expect(r.stderr).toContain('forbidden');
  });
});

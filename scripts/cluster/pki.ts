/**
 * The certificates of a cluster (and of the test API server), made with
 * openssl: one CA, then a key and certificate per identity, ECDSA P-256
 * (fast to generate; every Kubernetes component accepts it), valid for a
 * year. The identities follow Kubernetes' conventions: a client's user is the
 * certificate's CN and its groups the O fields, so `system:masters` is the
 * admin group and `system:node:NAME` in `system:nodes` is what the Node
 * authorizer and NodeRestriction admission recognise as a kubelet.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';

export interface CertSpec {
  /** File name stem: NAME.crt and NAME.key. */
  name: string;
  /** The user (CN). */
  cn: string;
  /** The groups (O). */
  groups?: string[];
  /** Subject alternative names, for serving certificates. */
  ips?: string[];
  dns?: string[];
  usage: 'client' | 'server' | 'both';
}

export interface Pki {
  dir: string;
  caCert: string;
  caKey: string;
  cert(name: string): string;
  key(name: string): string;
}

const DAYS = '365';

async function openssl(args: string[], cwd: string): Promise<void> {
  const r = await execa('openssl', args, { cwd, reject: false, all: true });
  if (r.exitCode !== 0) throw new Error(`openssl ${args.slice(0, 2).join(' ')} failed (${r.exitCode}): ${String(r.all).slice(-500)}`);
}

async function ecKey(path: string, cwd: string): Promise<void> {
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path], cwd);
}

function subject(cn: string, groups: string[] = []): string {
  const esc = (s: string) => s.replace(/([/=\\])/g, '\\$1');
  return groups.map((g) => `/O=${esc(g)}`).join('') + `/CN=${esc(cn)}`;
}

function extensions(spec: CertSpec): string {
  const eku = { client: 'clientAuth', server: 'serverAuth', both: 'serverAuth,clientAuth' }[spec.usage];
  const san = [...(spec.dns ?? []).map((d) => `DNS:${d}`), ...(spec.ips ?? []).map((i) => `IP:${i}`)];
  return [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    `extendedKeyUsage=${eku}`,
    ...(san.length ? [`subjectAltName=${san.join(',')}`] : []),
  ].join('\n');
}

/** Make (or reuse: files that exist are kept) the CA and each certificate in @dir. */
export async function makePki(dir: string, caName: string, certs: CertSpec[]): Promise<Pki> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const pki: Pki = {
    dir,
    caCert: join(dir, 'ca.crt'),
    caKey: join(dir, 'ca.key'),
    cert: (n) => join(dir, `${n}.crt`),
    key: (n) => join(dir, `${n}.key`),
  };
  if (!existsSync(pki.caCert)) {
    await ecKey('ca.key', dir);
    await openssl(['req', '-x509', '-new', '-key', 'ca.key', '-subj', `/CN=${caName}`, '-days', DAYS, '-out', 'ca.crt',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature'], dir);
  }
  await Promise.all(
    certs.map(async (c) => {
      if (existsSync(pki.cert(c.name))) return;
      await ecKey(`${c.name}.key`, dir);
      await openssl(['req', '-new', '-key', `${c.name}.key`, '-subj', subject(c.cn, c.groups), '-out', `${c.name}.csr`], dir);
      await writeFile(join(dir, `${c.name}.ext`), extensions(c));
      // a random serial each: the certificates are signed in parallel (no shared ca.srl)
      await openssl(['x509', '-req', '-in', `${c.name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', `0x${randomBytes(16).toString('hex')}`, '-days', DAYS,
        '-extfile', `${c.name}.ext`, '-out', `${c.name}.crt`], dir);
    }),
  );
  return pki;
}

/** A key pair for signing ServiceAccount tokens: sa.key (private), sa.pub. */
export async function makeServiceAccountKey(dir: string): Promise<{ key: string; pub: string }> {
  const key = join(dir, 'sa.key');
  const pub = join(dir, 'sa.pub');
  if (!existsSync(key)) {
    await ecKey('sa.key', dir);
    await openssl(['pkey', '-in', 'sa.key', '-pubout', '-out', 'sa.pub'], dir);
  }
  return { key, pub };
}

/** A kubeconfig for @user: a client certificate and key (files referenced, not embedded) or a bearer token (a ServiceAccount's). */
export function kubeconfig(server: string, ca: string, user: string, auth: { cert: string; key: string } | { token: string }): string {
  const credentials = 'token' in auth ? `{token: "${auth.token}"}` : `{client-certificate: "${auth.cert}", client-key: "${auth.key}"}`;
  return `apiVersion: v1
kind: Config
clusters:
- name: podtap
  cluster: {server: "${server}", certificate-authority: "${ca}"}
users:
- name: ${user}
  user: ${credentials}
contexts:
- name: ${user}@podtap
  context: {cluster: podtap, user: ${user}}
current-context: ${user}@podtap
`;
}

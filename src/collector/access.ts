/**
 * Who may read which captures through the collector's HTTP API.
 *
 * Kubernetes users present their own bearer token (what their kubeconfig
 * holds: a ServiceAccount token, an OIDC id-token, an exec plugin's token).
 * The collector asks the API server who that is (TokenReview), then whether
 * that user may read captures in the namespace of the request
 * (SubjectAccessReview on CAPTURE_ACCESS), so reading captures is granted with
 * ordinary RBAC, per namespace — and per policy through `resourceNames`.
 *
 * Why a subresource (`sniffpolicies/captures`, verb `get`) and not a custom
 * verb on `sniffpolicies`: the built-in `view` role and the chart's
 * `podtap-view` grant get/list/watch on sniffpolicies, so a verb among those
 * would hand everyone who may look at a policy its traffic; a custom verb
 * (`capture`) is granted by every `verbs: ["*"]` rule on sniffpolicies, even
 * ones written for status or deletion. A subresource is matched only by rules
 * that name it (or `*` resources), like `pods/log` and `pods/exec`, reads as
 * what it is ("get the captures of this policy"), and takes `resourceNames`
 * for one policy. `kubectl auth can-i get sniffpolicies --subresource=captures
 * -n NS` answers who may.
 *
 * The install's API token (`--auth-token-file`) stays as the break-glass path:
 * it reads everything, for the operator who holds the Secret (who could exec
 * into the collector anyway), and for clusters whose users authenticate by
 * client certificate, which the collector cannot check (docs/security.md).
 */
import { createHash } from 'node:crypto';
import { GROUP } from '../api/index.ts';
import type { KubeClient } from '../k8s/index.ts';
import type { Logger } from '../util/log.ts';

/** The RBAC attributes that grant reading a namespace's captures (the chart's roles grant exactly these). */
export const CAPTURE_ACCESS = { group: GROUP, resource: 'sniffpolicies', subresource: 'captures', verb: 'get' } as const;

/** What a request reads: one namespace (one policy of it, when named), or every namespace (`namespace` undefined). */
export interface AccessScope {
  namespace?: string | undefined;
  policy?: string | undefined;
}

export interface KubeUser {
  username: string;
  uid?: string | undefined;
  groups?: string[] | undefined;
  extra?: Record<string, string[]> | undefined;
}

/** Who asked: the holder of the install's API token, a Kubernetes user, or anyone (no authentication configured). */
export type Identity = { kind: 'install-token' } | { kind: 'anonymous' } | { kind: 'user'; user: KubeUser; token: string };

/** A refusal, with the HTTP status it is answered with. */
export class AccessDenied extends Error {
  readonly status: 401 | 403 | 503;
  constructor(status: 401 | 403 | 503, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.status = status;
  }
}

export interface Access {
  /** Throws AccessDenied(401) when the request carries no credential we accept. */
  authenticate(authorization: string | undefined): Promise<Identity>;
  /** Whether `id` may read what `scope` names. */
  allowed(id: Identity, scope: AccessScope): Promise<boolean>;
  /** Whether anyone is authenticated at all (false: every request is taken). */
  readonly enabled: boolean;
}

/** Checks a bearer token against the install's API token (TokenFile in http.ts). */
export interface InstallToken {
  check(authorization: string | undefined): boolean;
}

/** The subject a review is about: what TokenReview said, as SubjectAccessReview takes it. */
const subject = (u: KubeUser) => ({
  user: u.username,
  ...(u.uid ? { uid: u.uid } : {}),
  ...(u.groups ? { groups: u.groups } : {}),
  ...(u.extra ? { extra: u.extra } : {}),
});

/** The API server's answers, asked through a client with `create` on tokenreviews and subjectaccessreviews. */
export interface Reviewer {
  /** The user a token belongs to, or an error text when the API server does not authenticate it. */
  tokenReview(token: string): Promise<{ user: KubeUser } | { error: string }>;
  subjectAccessReview(user: KubeUser, scope: AccessScope): Promise<boolean>;
}

export function kubeReviewer(client: KubeClient): Reviewer {
  return {
    async tokenReview(token) {
      // no audiences: the API server's own (the token must be one it accepts)
      const r = await client.request<{ status?: { authenticated?: boolean; user?: KubeUser; error?: string } }>('POST', '/apis/authentication.k8s.io/v1/tokenreviews', {
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } },
      });
      const s = r.status ?? {};
      if (s.authenticated && s.user?.username) return { user: s.user };
      return { error: s.error || 'the API server does not authenticate this token' };
    },
    async subjectAccessReview(user, scope) {
      const r = await client.request<{ status?: { allowed?: boolean } }>('POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', {
        body: {
          apiVersion: 'authorization.k8s.io/v1',
          kind: 'SubjectAccessReview',
          spec: {
            ...subject(user),
            resourceAttributes: {
              ...CAPTURE_ACCESS,
              // '' = every namespace: granted only cluster-wide (a ClusterRoleBinding)
              namespace: scope.namespace ?? '',
              ...(scope.policy ? { name: scope.policy } : {}),
            },
          },
        },
      });
      return r.status?.allowed === true;
    },
  };
}

/** A small map whose entries expire, and whose oldest entries go first when it is full. */
class TtlCache<V> {
  readonly #m = new Map<string, { v: V; until: number }>();
  readonly #max: number;
  readonly #now: () => number;
  constructor(max: number, now: () => number) {
    this.#max = max;
    this.#now = now;
  }
  get(k: string): V | undefined {
    const e = this.#m.get(k);
    if (!e) return undefined;
    if (e.until <= this.#now()) {
      this.#m.delete(k);
      return undefined;
    }
    return e.v;
  }
  set(k: string, v: V, ttlMs: number): void {
    this.#m.delete(k);
    if (this.#m.size >= this.#max) this.#m.delete(this.#m.keys().next().value!);
    this.#m.set(k, { v, until: this.#now() + ttlMs });
  }
  delete(k: string): void {
    this.#m.delete(k);
  }
  get size(): number {
    return this.#m.size;
  }
}

export interface AccessOptions {
  installToken?: InstallToken | undefined;
  reviewer?: Reviewer | undefined;
  logger: Logger;
  /** how long an answer of the API server is reused (default 10 s): a revoked grant ends within this */
  cacheMs?: number;
  /** a refused token is remembered this long (default 2 s) */
  negativeCacheMs?: number;
  /** reviews in flight at most; beyond, 503 (default 32): a flood of made-up tokens cannot queue work on the API server */
  maxInFlight?: number;
  /** entries per cache (default 4096) */
  maxEntries?: number;
  now?: () => number;
}

const BEARER = /^Bearer[ \t]+(\S{1,8192})[ \t]*$/i;
const hash = (s: string): string => createHash('sha256').update(s).digest('base64url');

/** Builds the collector's access control; with neither a token nor a reviewer, everyone may read everything. */
export function makeAccess(opts: AccessOptions): Access {
  const { installToken, reviewer, logger: log } = opts;
  if (!installToken && !reviewer) {
    return { enabled: false, authenticate: async () => ({ kind: 'anonymous' }), allowed: async () => true };
  }
  const now = opts.now ?? Date.now;
  const cacheMs = opts.cacheMs ?? 10_000;
  const negativeMs = opts.negativeCacheMs ?? 2_000;
  const maxInFlight = opts.maxInFlight ?? 32;
  const users = new TtlCache<Promise<{ user: KubeUser } | { error: string }>>(opts.maxEntries ?? 4096, now);
  const grants = new TtlCache<Promise<boolean>>(opts.maxEntries ?? 4096, now);
  let inFlight = 0;

  /** One API call, counted against maxInFlight, its answer shared and reused; a failure is not kept. */
  const ask = <T>(cache: TtlCache<Promise<T>>, key: string, ttl: (v: T) => number, call: () => Promise<T>): Promise<T> => {
    const hit = cache.get(key);
    if (hit) return hit;
    if (inFlight >= maxInFlight) return Promise.reject(new AccessDenied(503, 'too many authorization checks in flight; retry shortly'));
    inFlight++;
    const p = call()
      .finally(() => inFlight--)
      .catch((err: unknown) => {
        log.warn({ err }, 'the API server could not answer an access review');
        throw new AccessDenied(503, 'the collector cannot reach the Kubernetes API to check this request; retry shortly', { cause: err });
      });
    cache.set(key, p, cacheMs);
    p.then(
      (v) => cache.set(key, p, ttl(v)),
      () => cache.delete(key),
    );
    return p;
  };

  return {
    enabled: true,
    async authenticate(authorization) {
      const m = BEARER.exec(authorization ?? '');
      if (!m) throw new AccessDenied(401, 'a bearer token is required (Authorization: Bearer <token>): your Kubernetes token, or the install\'s API token');
      if (installToken?.check(authorization)) return { kind: 'install-token' };
      const token = m[1]!;
      if (!reviewer) throw new AccessDenied(401, 'the token is not the collector\'s API token');
      const r = await ask(users, hash(token), (v) => ('user' in v ? cacheMs : negativeMs), () => reviewer.tokenReview(token));
      if ('error' in r) throw new AccessDenied(401, `the Kubernetes API server does not accept this token: ${r.error}`);
      return { kind: 'user', user: r.user, token };
    },
    async allowed(id, scope) {
      if (id.kind !== 'user') return true;
      if (!reviewer) return false;
      const u = id.user;
      const key = JSON.stringify([u.username, u.uid ?? '', u.groups ?? [], u.extra ?? {}, scope.namespace ?? '', scope.policy ?? '']);
      return ask(grants, hash(key), () => cacheMs, () => reviewer.subjectAccessReview(u, scope));
    },
  };
}

/** What a refusal says: the permission that is missing, where. */
export function forbidden(id: Identity, scope: AccessScope): AccessDenied {
  const who = id.kind === 'user' ? id.user.username : 'this token';
  const what = `${CAPTURE_ACCESS.verb} ${CAPTURE_ACCESS.resource}/${CAPTURE_ACCESS.subresource}`;
  const where = scope.namespace === undefined ? 'in every namespace (a ClusterRoleBinding)' : `in namespace ${scope.namespace}${scope.policy ? ` (policy ${scope.policy})` : ''}`;
  return new AccessDenied(403, `${who} may not read captures ${where}: RBAC must grant "${what}" (apiGroup ${CAPTURE_ACCESS.group}) there`);
}

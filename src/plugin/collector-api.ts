/**
 * Reaching the collector's HTTP API from a workstation: through the API
 * server's port-forward to the collector pod (found behind its Service), or
 * straight at --collector-url. The bearer token sent is, in this order:
 * --token-file, $PODTAP_COLLECTOR_TOKEN (the install's API token, break-glass),
 * the kubeconfig user's own token (the collector checks it with a TokenReview
 * and authorizes each read in its namespace: docs/security.md), or — for a
 * user without one (a client certificate) — the chart's Secret (key
 * api-token) when the user may read it.
 */
import { readFile } from 'node:fs/promises';
import { request, type IncomingMessage } from 'node:http';
import { ExitCode, UserError } from '../util/errors.ts';
import type { Kube } from './kube.ts';

export interface CollectorFlags {
  url?: string | undefined;
  namespace: string;
  service: string;
  port?: number | undefined;
  tokenFile?: string | undefined;
  tokenSecret: string;
}

export interface CollectorEndpoint {
  base: string;
  token: string | undefined;
  /** how it is reached, for messages */
  via: string;
  close(): Promise<void>;
}

/** Where the chart puts the collector when nothing else is known (a release named podtap in podtap-system). */
export const COLLECTOR_DEFAULTS = { namespace: 'podtap-system', service: 'podtap-collector' } as const;

/**
 * The collector Service to use: the flags' when both are given; else the one
 * podtap collector the chart's labels find (in --collector-namespace, or in
 * every namespace), so a release of any name in any namespace is found; else
 * the defaults. Several found: the user picks. Its token Secret is the
 * chart's name for it (<service>-token) unless --collector-token-secret.
 */
type CollectorNames = { namespace?: string | undefined; service?: string | undefined; tokenSecret?: string | undefined };

/** The flags, completed with the defaults (no cluster to ask). */
export function defaultCollector(flags: CollectorNames, found?: { namespace: string; name: string }): { namespace: string; service: string; tokenSecret: string } {
  const service = found?.name ?? flags.service ?? COLLECTOR_DEFAULTS.service;
  return { namespace: found?.namespace ?? flags.namespace ?? COLLECTOR_DEFAULTS.namespace, service, tokenSecret: flags.tokenSecret ?? `${service}-token` };
}

export async function findCollector(kube: Kube, flags: CollectorNames): Promise<{ namespace: string; service: string; tokenSecret: string }> {
  if (flags.namespace && flags.service) return defaultCollector(flags);
  const found = (await kube.collectorServices(flags.namespace))?.filter((s) => !flags.service || s.name === flags.service);
  if (found && found.length === 1) return defaultCollector(flags, found[0]);
  if (found && found.length > 1) {
    throw new UserError(`${found.length} podtap collectors found: ${found.map((s) => `${s.namespace}/${s.name}`).join(', ')}`, {
      exitCode: ExitCode.usage,
      hint: 'choose one with --collector-namespace NS --collector-service NAME',
    });
  }
  return defaultCollector(flags);
}

export async function collectorToken(kube: Kube | undefined, f: CollectorFlags, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  if (f.tokenFile) {
    try {
      return (await readFile(f.tokenFile, 'utf8')).trim() || undefined;
    } catch (err) {
      throw new UserError(`--token-file: cannot read ${f.tokenFile}`, { exitCode: ExitCode.badInput, cause: err });
    }
  }
  if (env.PODTAP_COLLECTOR_TOKEN) return env.PODTAP_COLLECTOR_TOKEN;
  if (!kube) return undefined;
  return (await kube.userToken()) ?? kube.secretValue(f.namespace, f.tokenSecret, 'api-token');
}

export async function connectCollector(kube: Kube | undefined, f: CollectorFlags, env: NodeJS.ProcessEnv): Promise<CollectorEndpoint> {
  const token = await collectorToken(kube, f, env);
  if (f.url) {
    let u: URL;
    try {
      u = new URL(f.url);
    } catch {
      throw new UserError(`--collector-url: "${f.url}" is not a URL`, { exitCode: ExitCode.usage });
    }
    if (u.protocol !== 'http:') throw new UserError('--collector-url: only http:// (put TLS in front with a proxy or use the port-forward)', { exitCode: ExitCode.usage });
    return { base: u.origin, token, via: u.origin, close: async () => undefined };
  }
  if (!kube) throw new UserError('no cluster to reach the collector through', { exitCode: ExitCode.usage });
  const target = await kube.collectorPod(f.namespace, f.service, f.port);
  const fwd = await kube.forward(f.namespace, target.pod, target.port);
  return { base: `http://${fwd.host}:${fwd.port}`, token, via: `port-forward to ${f.namespace}/${target.pod}:${target.port}`, close: () => fwd.close() };
}

/** GET `path`: the response once its headers came, or a UserError for an HTTP error. */
export function get(ep: CollectorEndpoint, path: string, signal?: AbortSignal): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = request(`${ep.base}${path}`, {
      agent: false,
      headers: ep.token ? { Authorization: `Bearer ${ep.token}` } : {},
      ...(signal ? { signal } : {}),
    });
    req.on('response', (res) => {
      if (res.statusCode === 200) return resolve(res);
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d.slice(0, 2000)));
      res.on('end', () => {
        const message = (() => {
          try {
            return (JSON.parse(body) as { error?: string }).error ?? body;
          } catch {
            return body;
          }
        })().trim();
        if (res.statusCode === 401) {
          reject(new UserError(`the collector (${ep.via}) did not accept ${ep.token ? 'the token sent' : 'a request without a token'}: ${message}`, {
            exitCode: ExitCode.failure,
            hint:
              'it checks your kubeconfig user\'s token with the API server; a user with a client certificate has none to send: ' +
              'pass --token-file FILE or set PODTAP_COLLECTOR_TOKEN (the chart\'s Secret <collector service>-token, key api-token)',
          }));
        } else if (res.statusCode === 403) {
          reject(new UserError(`the collector refused ${path}: ${message}`, {
            exitCode: ExitCode.failure,
            hint: 'check with: kubectl auth can-i get sniffpolicies --subresource=captures -n NAMESPACE',
          }));
        } else {
          reject(new UserError(`the collector answered ${res.statusCode} to ${path}: ${message}`, { exitCode: ExitCode.failure }));
        }
      });
    });
    req.on('error', (err) => {
      if (signal?.aborted) return reject(err);
      reject(new UserError(`cannot reach the collector (${ep.via}): ${err.message}`, { exitCode: ExitCode.unreachable, cause: err }));
    });
    req.end();
  });
}

export async function getJson<T>(ep: CollectorEndpoint, path: string): Promise<T> {
  const res = await get(ep, path);
  let text = '';
  res.setEncoding('utf8');
  for await (const chunk of res) text += chunk as string;
  return JSON.parse(text) as T;
}

/** A capture file as the collector lists it. */
export interface CaptureItem {
  path: string;
  capture: string;
  namespace: string | null;
  policy: string | null;
  start: string;
  seq: number;
  size: number;
  modified: string;
  open: boolean;
}

/**
 * A tiny API server for one resource (/api/v1/pods, /api/v1/namespaces/NS/pods),
 * enough to check the client's pagination, watch streaming, 410 handling and
 * credentials. (The controller's end-to-end test uses the project's embedded
 * Kubernetes API instead.)
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';

export interface Obj {
  metadata: { name: string; namespace: string; resourceVersion?: string; labels?: Record<string, string> };
  [k: string]: unknown;
}

export class FakeServer {
  objects = new Map<string, Obj>();
  events: { rv: number; type: string; object: Obj }[] = [];
  rv = 1;
  /** Watches from before this resourceVersion get 410. */
  compactedBefore = 0;
  requests: { method: string; url: string; auth?: string }[] = [];
  private watchers = new Set<{ res: ServerResponse; from: number }>();
  private server = createServer((req, res) => this.handle(req, res));
  url = '';

  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    for (const w of this.watchers) w.res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  kubeconfig(path: string, token = 'secret-token'): string {
    writeFileSync(
      path,
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters: [{name: fake, cluster: {server: "' + this.url + '", insecure-skip-tls-verify: true}}]',
        'users: [{name: u, user: {token: ' + token + '}}]',
        'contexts: [{name: c, context: {cluster: fake, user: u}}]',
        'current-context: c',
      ].join('\n'),
    );
    return path;
  }

  write(type: 'ADDED' | 'MODIFIED' | 'DELETED', obj: Obj): void {
    const rv = ++this.rv;
    const o = structuredClone(obj);
    o.metadata.resourceVersion = String(rv);
    const key = `${o.metadata.namespace}/${o.metadata.name}`;
    if (type === 'DELETED') this.objects.delete(key);
    else this.objects.set(key, o);
    this.events.push({ rv, type, object: o });
    for (const w of this.watchers) w.res.write(`${JSON.stringify({ type, object: o })}\n`);
  }

  /** Forget history: open watches get an ERROR 410 event and end. */
  compact(): void {
    this.compactedBefore = this.rv;
    for (const w of this.watchers) {
      w.res.end(`${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version' } })}\n`);
    }
    this.watchers.clear();
  }

  private status(res: ServerResponse, code: number, reason: string, message: string): void {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code, reason, message }));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url!, 'http://x');
    this.requests.push({ method: req.method!, url: req.url!, ...(req.headers.authorization ? { auth: req.headers.authorization } : {}) });
    const m = /^\/api\/v1(?:\/namespaces\/([^/]+))?\/pods(?:\/([^/]+))?$/.exec(url.pathname);
    if (!m) return this.status(res, 404, 'NotFound', `the server could not find ${url.pathname}`);
    const [, ns, name] = m;
    if (name) {
      const o = this.objects.get(`${ns}/${name}`);
      if (!o) return this.status(res, 404, 'NotFound', `pods "${name}" not found`);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(o));
      return;
    }
    const matching = [...this.objects.values()].filter((o) => !ns || o.metadata.namespace === ns).sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1));
    if (url.searchParams.get('watch') === 'true') {
      const from = Number(url.searchParams.get('resourceVersion') || '0');
      if (from < this.compactedBefore) return this.status(res, 410, 'Expired', 'too old resource version');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.flushHeaders();
      for (const e of this.events) if (e.rv > from && (!ns || e.object.metadata.namespace === ns)) res.write(`${JSON.stringify({ type: e.type, object: e.object })}\n`);
      const w = { res, from };
      this.watchers.add(w);
      req.on('close', () => this.watchers.delete(w));
      return;
    }
    const limit = Number(url.searchParams.get('limit') || '0');
    const start = Number(url.searchParams.get('continue') || '0');
    const page = limit > 0 ? matching.slice(start, start + limit) : matching.slice(start);
    const next = limit > 0 && start + limit < matching.length ? String(start + limit) : undefined;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: String(this.rv), ...(next ? { continue: next } : {}) }, items: page }));
  }
}

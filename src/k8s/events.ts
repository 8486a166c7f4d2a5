/**
 * core/v1 Events on an object (what `kubectl describe` shows under Events).
 * A repeat of the same event on the same object bumps the count of the
 * existing Event instead of creating another (as client-go's recorder does),
 * so a flapping condition does not flood etcd. Recording never throws: an
 * event is a courtesy, not part of reconciliation.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from '../util/log.ts';
import { silentLogger } from '../util/log.ts';
import { apiVersionOf, type KubeClient, type KubeObject } from './client.ts';
import { isNotFound } from './errors.ts';
import { Resources } from './resources.ts';

export type EventType = 'Normal' | 'Warning';

export interface EventRecorderOptions {
  /** source.component and reportingComponent, e.g. podtap-controller. */
  component: string;
  /** reportingInstance, e.g. the pod name. */
  instance?: string | undefined;
  logger?: Logger | undefined;
  /** How many distinct events are remembered for aggregation. */
  maxTracked?: number | undefined;
}

interface Tracked {
  name: string;
  namespace: string;
  count: number;
}

const MAX_MESSAGE = 1024;

export class EventRecorder {
  private readonly client: KubeClient;
  private readonly opts: EventRecorderOptions;
  private readonly log: Logger;
  private readonly tracked = new Map<string, Tracked>();
  private readonly max: number;

  constructor(client: KubeClient, opts: EventRecorderOptions) {
    this.client = client;
    this.opts = opts;
    this.log = opts.logger ?? silentLogger;
    this.max = opts.maxTracked ?? 1000;
  }

  /** Record an event on `target` (which must have a name, namespace and uid). */
  async record(target: KubeObject & { apiVersion: string; kind: string }, type: EventType, reason: string, message: string): Promise<void> {
    const { name, namespace, uid, resourceVersion } = target.metadata;
    if (!name) return;
    const ns = namespace || 'default';
    const msg = message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE - 3)}...` : message;
    const key = `${uid ?? name}\u0000${type}\u0000${reason}\u0000${msg}`;
    const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    const seen = this.tracked.get(key);
    try {
      if (seen) {
        this.tracked.delete(key); // re-insert: most recently used last
        try {
          await this.client.patch(Resources.events, seen.namespace, seen.name, { count: seen.count + 1, lastTimestamp: now }, 'merge');
          seen.count++;
          this.tracked.set(key, seen);
          return;
        } catch (err) {
          if (!isNotFound(err)) throw err; // expired (events have a TTL): create a new one
        }
      }
      const eventName = `${name}.${Date.now().toString(16)}${randomBytes(3).toString('hex')}`;
      await this.client.create(Resources.events, {
        apiVersion: apiVersionOf(Resources.events),
        kind: 'Event',
        metadata: { name: eventName, namespace: ns },
        involvedObject: { apiVersion: target.apiVersion, kind: target.kind, name, namespace: ns, uid, resourceVersion },
        type,
        reason,
        message: msg,
        source: { component: this.opts.component },
        reportingComponent: this.opts.component,
        reportingInstance: this.opts.instance ?? '',
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      });
      this.tracked.set(key, { name: eventName, namespace: ns, count: 1 });
      if (this.tracked.size > this.max) this.tracked.delete(this.tracked.keys().next().value!);
    } catch (err) {
      this.log.warn({ err, object: `${ns}/${name}`, reason }, 'cannot record event');
    }
  }
}

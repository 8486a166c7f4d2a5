/**
 * Kubernetes for podtap's controllers, kind-agnostic: a client, informers and
 * their store, label selectors, events, and a small controller runtime (work
 * queue with rate limiting, leader election, the worker loop, the metrics and
 * health endpoint) used once by the controller and once by the agent. The
 * podtap.io kinds and their typed clients live with the API (src/api).
 */
export * from './client.ts';
export * from './config.ts';
export * from './errors.ts';
export * from './events.ts';
export * from './informer.ts';
export * from './labels.ts';
export * from './names.ts';
export * from './resources.ts';
export * from './store.ts';
export * from './queue.ts';
export * from './limiter.ts';
export * from './leader.ts';
export * from './http.ts';
export * from './worker.ts';

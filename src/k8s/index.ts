/** Kubernetes client helpers shared by the controller and the agent. */
export * from './client.ts';
export * from './config.ts';
export * from './errors.ts';
export * from './events.ts';
export * from './informer.ts';
export * from './labels.ts';
export * from './resources.ts';
export * from './store.ts';

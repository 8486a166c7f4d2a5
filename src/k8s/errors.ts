/**
 * Classifying errors from the Kubernetes API, whichever way they reached us:
 * client-node's ApiException (`code`, `body` = metav1.Status), the Watch
 * helper's plain Error (`statusCode`), a watch ERROR event's Status object, or
 * a network failure (no status at all). Controllers decide between "retry
 * with backoff" and "give up" with these.
 */
/** metav1.Status, as the API server returns it with every error. */
export interface Status {
  kind?: string;
  apiVersion?: string;
  status?: string;
  message?: string;
  reason?: string;
  code?: number;
  details?: { name?: string; kind?: string; causes?: { reason?: string; message?: string; field?: string }[]; retryAfterSeconds?: number };
}

/**
 * An API error with a readable message. Shaped like client-node's
 * ApiException (`code`, `body`, `headers`), which this module also
 * classifies, without importing client-node (see config.ts for why).
 */
export class KubeApiError extends Error {
  readonly code: number;
  readonly body: Status | undefined;
  readonly headers: Record<string, string>;
  readonly method: string;
  readonly path: string;
  constructor(code: number, method: string, path: string, body: Status | undefined, headers: Record<string, string> = {}) {
    const why = body?.message ?? body?.reason ?? 'no details';
    super(`${method} ${path}: ${code} ${body?.reason ?? ''}: ${why}`.replace(/ {2}/, ' '));
    this.name = 'KubeApiError';
    this.code = code;
    this.body = body;
    this.headers = headers;
    this.method = method;
    this.path = path;
  }
}

function record(err: unknown): Record<string, unknown> | undefined {
  return typeof err === 'object' && err !== null ? (err as Record<string, unknown>) : undefined;
}

/** The HTTP status of an API error, or undefined for network and other errors. */
export function httpStatus(err: unknown): number | undefined {
  const e = record(err);
  if (!e) return undefined;
  for (const k of ['code', 'statusCode', 'status']) {
    const v = e[k];
    if (typeof v === 'number' && v >= 100 && v < 600) return v;
  }
  // A watch ERROR event carries a Status object; so may a wrapped error.
  const body = record(e.body);
  if (body && typeof body.code === 'number') return body.code;
  if (e.cause !== undefined && e.cause !== err) return httpStatus(e.cause);
  return undefined;
}

/** The metav1.Status `reason` of an API error (AlreadyExists, Conflict, Expired, ...). */
export function statusReason(err: unknown): string | undefined {
  const e = record(err);
  if (!e) return undefined;
  const body = record(e.body);
  if (body && typeof body.reason === 'string') return body.reason;
  if (e.kind === 'Status' && typeof e.reason === 'string') return e.reason;
  if (e.cause !== undefined && e.cause !== err) return statusReason(e.cause);
  return undefined;
}

export function isNotFound(err: unknown): boolean {
  return httpStatus(err) === 404;
}

/** 409 of any kind: a stale resourceVersion (Conflict) or a create of an existing name (AlreadyExists). */
export function isConflict(err: unknown): boolean {
  return httpStatus(err) === 409;
}

/** 409 from a create: the object is already there. */
export function isAlreadyExists(err: unknown): boolean {
  return httpStatus(err) === 409 && statusReason(err) === 'AlreadyExists';
}

/** 410: a watch or list continue token is older than the server keeps; relist. */
export function isGone(err: unknown): boolean {
  return httpStatus(err) === 410;
}

export function isForbidden(err: unknown): boolean {
  return httpStatus(err) === 403;
}

/** 422 / 400: the server refuses the object itself; sending it again will not help. */
export function isInvalid(err: unknown): boolean {
  const s = httpStatus(err);
  return s === 422 || s === 400;
}

/**
 * Worth retrying with backoff: network errors and timeouts (no status),
 * 409 (someone else wrote first), 429 (throttled), 5xx. Everything else
 * (400, 401, 403, 404, 422, ...) says the request itself is wrong.
 */
export function isTransient(err: unknown): boolean {
  const s = httpStatus(err);
  if (s === undefined) return true;
  return s === 409 || s === 429 || s >= 500;
}

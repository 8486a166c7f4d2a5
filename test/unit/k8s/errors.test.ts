import { ApiException } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { KubeApiError, httpStatus, isAlreadyExists, isConflict, isGone, isNotFound, isTransient, statusReason } from '../../../src/k8s/index.ts';

const status = (code: number, reason: string) => ({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code, reason, message: `${reason} happened` });

describe('API error classification', () => {
  it.each([
    { description: "client-node's ApiException", input: new ApiException(404, 'x', status(404, 'NotFound'), {}), expected: { status: 404, reason: 'NotFound' } },
    { description: 'our KubeApiError', input: new KubeApiError(409, 'PUT', '/p', status(409, 'Conflict')), expected: { status: 409, reason: 'Conflict' } },
    { description: "the Watch helper's error (statusCode)", input: Object.assign(new Error('Gone'), { statusCode: 410 }), expected: { status: 410, reason: undefined } },
    { description: 'a watch ERROR event (a Status object)', input: status(410, 'Expired'), expected: { status: 410, reason: 'Expired' } },
    { description: 'a wrapped API error', input: new Error('reconcile failed', { cause: new KubeApiError(429, 'GET', '/p', status(429, 'TooManyRequests')) }), expected: { status: 429, reason: 'TooManyRequests' } },
    { description: 'a network error', input: new Error('GET /p: request failed', { cause: new Error('ECONNREFUSED') }), expected: { status: undefined, reason: undefined } },
    { description: 'not an error at all', input: 'boom', expected: { status: undefined, reason: undefined } },
  ])('$description', ({ input, expected }) => {
    expect(httpStatus(input)).toBe(expected.status);
    expect(statusReason(input)).toBe(expected.reason);
  });

  const err = (code: number, reason = '') => new KubeApiError(code, 'X', '/p', status(code, reason));
  it.each([
    { description: '409 Conflict', input: err(409, 'Conflict'), expected: { conflict: true, exists: false, transient: true, notFound: false, gone: false } },
    { description: '409 AlreadyExists', input: err(409, 'AlreadyExists'), expected: { conflict: true, exists: true, transient: true, notFound: false, gone: false } },
    { description: '404', input: err(404, 'NotFound'), expected: { conflict: false, exists: false, transient: false, notFound: true, gone: false } },
    { description: '410', input: err(410, 'Expired'), expected: { conflict: false, exists: false, transient: false, notFound: false, gone: true } },
    { description: '422 Invalid', input: err(422, 'Invalid'), expected: { conflict: false, exists: false, transient: false, notFound: false, gone: false } },
    { description: '403 Forbidden', input: err(403, 'Forbidden'), expected: { conflict: false, exists: false, transient: false, notFound: false, gone: false } },
    { description: '500', input: err(500, 'InternalError'), expected: { conflict: false, exists: false, transient: true, notFound: false, gone: false } },
    { description: '429', input: err(429, 'TooManyRequests'), expected: { conflict: false, exists: false, transient: true, notFound: false, gone: false } },
    { description: 'network', input: new Error('ECONNRESET'), expected: { conflict: false, exists: false, transient: true, notFound: false, gone: false } },
  ])('$description', ({ input, expected }) => {
    expect({ conflict: isConflict(input), exists: isAlreadyExists(input), transient: isTransient(input), notFound: isNotFound(input), gone: isGone(input) }).toEqual(expected);
  });

  it("KubeApiError reads well and has ApiException's shape", () => {
    const e = new KubeApiError(409, 'PUT', '/apis/podtap.io/v1alpha1/namespaces/a/sniffnodeassignments/x', status(409, 'Conflict'));
    expect(e.body).toEqual(status(409, 'Conflict'));
    expect(e.message).toBe('PUT /apis/podtap.io/v1alpha1/namespaces/a/sniffnodeassignments/x: 409 Conflict: Conflict happened');
    expect(e.code).toBe(409);
  });
});

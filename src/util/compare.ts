/**
 * Strings in code-point order: how the API server and kubectl sort names,
 * and the same on every machine (localeCompare is not).
 */
export function byCodePoint(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

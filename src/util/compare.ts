/**
 * Strings in UTF-16 code-unit order (JavaScript's `<`), the same on every
 * machine (localeCompare is not). For what podtap sorts (Kubernetes names,
 * which are ASCII, and JSON keys of its own objects) that is also code-point
 * and UTF-8 byte order: how the API server (Go) and kubectl sort them.
 */
export function byCodePoint(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

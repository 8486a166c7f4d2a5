/**
 * Reading SniffPolicy manifests as users write them: multi-document YAML
 * (or JSON), possibly mixed with other kinds, validated with the same zod
 * schema the CRD is generated from, every problem reported with its field path.
 */
import { parseAllDocuments } from 'yaml';
import { ExitCode, UserError } from '../util/errors.ts';
import { SniffPolicySchema, describeIssues, type SniffPolicy } from './sniffpolicy.ts';

export interface ParsedPolicies {
  policies: SniffPolicy[];
}

/**
 * Every SniffPolicy of a YAML stream, validated and defaulted. Other kinds are
 * skipped; `kind: List` is looked into. Throws UserError (ExitCode.badInput)
 * on a YAML error, on any invalid policy (all issues listed, one per line, as
 * `spec.filter.ports[0].endPort: endPort must be greater than or equal to port`),
 * or when the stream holds no SniffPolicy.
 */
export function parseSniffPolicyYaml(text: string, file = '<input>'): ParsedPolicies {
  const docs = parseAllDocuments(text);
  const objects: { doc: number; value: unknown }[] = [];
  for (const [i, doc] of docs.entries()) {
    const err = doc.errors[0];
    if (err) {
      const at = err.linePos?.[0];
      return fail(`${file}${at ? `:${at.line}:${at.col}` : ''}: invalid YAML: ${err.message.split('\n')[0]}`, err);
    }
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue;
    if (isRecord(value) && value.kind === 'List' && Array.isArray(value.items)) {
      for (const item of value.items as unknown[]) objects.push({ doc: i + 1, value: item });
    } else {
      objects.push({ doc: i + 1, value });
    }
  }

  const policies: SniffPolicy[] = [];
  const problems: string[] = [];
  const otherKinds = new Set<string>();
  const many = objects.length > 1;
  for (const { doc, value } of objects) {
    if (!isRecord(value)) {
      problems.push(`${file}: document ${doc} is not a mapping`);
      continue;
    }
    if (value.kind !== 'SniffPolicy') {
      otherKinds.add(typeof value.kind === 'string' ? value.kind : '(no kind)');
      continue;
    }
    const result = SniffPolicySchema.safeParse(value);
    if (result.success) {
      policies.push(result.data);
      continue;
    }
    const meta = isRecord(value.metadata) ? value.metadata : {};
    const name = typeof meta.name === 'string' ? meta.name : '(unnamed)';
    const where = many ? `${file}, document ${doc}` : file;
    problems.push(`${where}: invalid SniffPolicy ${name}:`, ...describeIssues(result.error).map((l) => `  ${l}`));
  }
  if (problems.length > 0) return fail(problems.join('\n'));
  if (policies.length === 0) {
    const kinds = otherKinds.size > 0 ? ` (found ${[...otherKinds].join(', ')})` : '';
    return fail(`${file}: no SniffPolicy found${kinds}`);
  }
  return { policies };
}

function fail(message: string, cause?: unknown): never {
  throw new UserError(message, {
    exitCode: ExitCode.badInput,
    hint: 'See docs/api.md for the SniffPolicy fields; examples/ has working policies.',
    cause,
  });
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

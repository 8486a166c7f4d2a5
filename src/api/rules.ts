/**
 * Cross-field rules are written twice on purpose: as a zod refinement (the
 * CLI validates before it talks to anyone) and as a CEL rule in the CRD
 * (`kubectl apply` refuses the object with the field path). `withRule` keeps
 * both halves of a rule in one place, with one message.
 */
import type { z } from 'zod';

/** One entry of `x-kubernetes-validations`. */
export interface CelRule {
  rule: string;
  message: string;
  /** JSONPath relative to the node carrying the rule, e.g. `.endPort`. */
  fieldPath?: string;
}

export const X_VALIDATIONS = 'x-kubernetes-validations';

/**
 * Attach `rule` to `schema`: a zod refinement (`check`, issue at `fieldPath`
 * under the node) and the same rule in CEL in the schema's metadata, added to
 * any rules already there.
 */
export function withRule<T extends z.ZodType>(schema: T, check: (value: z.output<T>) => boolean, rule: CelRule): T {
  const path = (rule.fieldPath ?? '').split('.').filter(Boolean);
  const refined = schema.refine(check, { message: rule.message, path }) as T;
  return refined.meta({ [X_VALIDATIONS]: [...celRulesOf(schema), rule] }) as T;
}

/** The CEL rules already attached to a schema. */
export function celRulesOf(schema: z.ZodType): CelRule[] {
  const existing = schema.meta()?.[X_VALIDATIONS];
  return Array.isArray(existing) ? (existing as CelRule[]) : [];
}

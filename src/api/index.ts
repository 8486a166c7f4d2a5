/** The podtap.io/v1alpha1 API: schemas, types and helpers. */
export * from './vocabulary.ts';
export * from './common.ts';
export * from './conditions.ts';
export * from './sniffpolicy.ts';
export * from './assignment.ts';
export * from './parse.ts';
export * from './netaddr.ts';
export * from './resources.ts';
export { withRule, celRulesOf, X_VALIDATIONS, type CelRule } from './rules.ts';
export { buildCrds, crdFiles, KUBERNETES_EXTENSIONS, toStructural, resourceSchema, SNIFFPOLICY_COLUMNS, SNIFFNODEASSIGNMENT_COLUMNS, CRD_HEADER, type JsonSchema, type PrinterColumn } from './crd.ts';
export * from './view.ts';

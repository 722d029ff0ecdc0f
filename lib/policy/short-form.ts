// The short text form of a policy the CLI and the API take (`top-p:0.4+norm`), and the labels tables print.
import { DynamoeError } from '../errors';
import { MAX_EXPERTS, typeError } from '../validate';
import { checkPolicy, RoutingPolicy } from './routing-policy';

function fail(message: string): never {
  throw new DynamoeError('ERR_DYNAMOE_POLICY', message);
}

/** Suffix of the short form that sets `normalize` (renormalise the kept weights): `top-p:0.4+norm`. */
export const NORMALIZE_SUFFIX = '+norm';

/**
 * Parses the CLI form: `top-k:2`, `top-p:0.4`, `threshold:0.1`, each optionally ending in `+norm` (validated
 * later against the expert count).
 */
export function parsePolicy(text: string): RoutingPolicy {
  if (typeof text !== 'string') typeError('a policy short form', "a string such as 'top-p:0.4'", text);
  const normalize = text.endsWith(NORMALIZE_SUFFIX);
  const [kind, value] = (normalize ? text.slice(0, -NORMALIZE_SUFFIX.length) : text).split(':');
  const number = Number(value);
  if (value === undefined || value === '' || Number.isNaN(number)) {
    fail(`policy '${text}' must look like top-k:2, top-p:0.4 or threshold:0.1 (optionally ending in +norm)`);
  }
  const flags = normalize ? { normalize } : {};
  if (kind === 'top-k') return { kind, k: number, ...flags };
  if (kind === 'top-p') return { kind, p: number, ...flags };
  if (kind === 'threshold') return { kind, tau: number, ...flags };
  return fail(`policy '${text}' must start with top-k, top-p or threshold`);
}

/** A short label for tables, the short form plus a scale: `top-p:0.4`, `top-k:2+norm`, `top-k:6+norm*2.5`. */
export function policyLabel(policy: RoutingPolicy): string {
  checkPolicy(policy, MAX_EXPERTS);
  const base =
    policy.kind === 'top-k' ? `top-k:${policy.k}` : policy.kind === 'top-p' ? `top-p:${policy.p}` : `threshold:${policy.tau}`;
  const scale = policy.kind === 'top-k' && policy.scale !== undefined && policy.scale !== 1 ? `*${policy.scale}` : '';
  return `${base}${policy.normalize ? NORMALIZE_SUFFIX : ''}${scale}`;
}

// The sweep's policy list: `top-k:1,top-k:2+norm,top-p:0.2..0.8:0.1` expands ranges into single policies.
import { DynamoeError } from '../errors';
import { RoutingPolicy } from './routing-policy';
import { NORMALIZE_SUFFIX, parsePolicy } from './short-form';

// Range values are rounded to this many decimals so 0.1 steps give 0.3, not 0.30000000000000004.
const DECIMALS = 6;
// A range that expands to more policies than this is almost surely a typo (a step of 0.001).
const MAX_POLICIES = 200;

function fail(message: string): never {
  throw new DynamoeError('ERR_DYNAMOE_POLICY', message);
}

/**
 * Expands `kind:start..end[:step][+norm]` (step default 1 for top-k, 0.1 otherwise) into its policies, ends
 * included.
 */
function expandRange(item: string): RoutingPolicy[] {
  const suffix = item.endsWith(NORMALIZE_SUFFIX) ? NORMALIZE_SUFFIX : '';
  const [kind, range = '', stepText] = item.slice(0, item.length - suffix.length).split(':');
  const [startText, endText] = range.split('..');
  const start = Number(startText);
  const end = Number(endText);
  const step = stepText === undefined ? (kind === 'top-k' ? 1 : 0.1) : Number(stepText);
  if (![start, end, step].every(Number.isFinite) || startText === '' || endText === '' || step <= 0 || end < start) {
    fail(`policy range '${item}' must look like top-p:0.2..0.8:0.1 (start <= end, step > 0)`);
  }
  const count = Math.floor((end - start) / step + 1e-9) + 1;
  if (count > MAX_POLICIES) fail(`policy range '${item}' expands to ${count} policies (at most ${MAX_POLICIES})`);
  return Array.from({ length: count }, (_, i) => parsePolicy(`${kind}:${Number((start + i * step).toFixed(DECIMALS))}${suffix}`));
}

/** Parses a comma-separated list of policies and ranges; each entry is one policy for every MoE layer. */
export function parsePolicyList(text: string): RoutingPolicy[] {
  const items = text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
  if (items.length === 0) fail('the policy list is empty; try top-k:2,top-p:0.2..0.8:0.1');
  return items.flatMap((item) => (item.includes('..') ? expandRange(item) : [parsePolicy(item)]));
}

// The routing policy option of loadModel / forward / score / generate: one policy for every MoE layer, one per
// layer, or a policy file's content, resolved to one checked policy per MoE layer.
import { DynamoeError } from '../errors';
import { POLICY_FILE_FORMAT, PolicyFile } from './policy-file';
import { checkPolicyUnderRule } from './router-rule';
import { checkPolicy, RoutingPolicy } from './routing-policy';
import { parsePolicy } from './short-form';

/** An MoE layer as policy resolution sees it: its decoder layer index, expert count and trained policy. */
export interface PolicyLayer {
  layer: number;
  experts: number;
  policy: RoutingPolicy;
  /** Zero-computation experts: policies count them with the FFN experts. */
  zeroExperts?: { count: number };
  /** Group-limited routers: a policy may keep no more than the kept groups hold. */
  router?: { groups?: { count: number; keep: number } };
}

// A policy checked against one layer: its routed slots and its router's kept groups.
function checkForLayer(policy: RoutingPolicy, layer: PolicyLayer): RoutingPolicy {
  const slots = layer.experts + (layer.zeroExperts?.count ?? 0);
  const checked = checkPolicy(policy, slots);
  const groups = layer.router?.groups;
  checkPolicyUnderRule(checked, groups ? { groups: groups.count, keptGroups: groups.keep } : undefined, slots);
  return checked;
}

/**
 * A policy object or its short form ('top-p:0.4'); an array, or short forms joined by commas ('top-k:1,top-p:0.5'),
 * gives each MoE layer its own, in layer order; a {@link PolicyFile} (from readPolicyFile) gives each layer the
 * policy saved for it.
 */
export type PolicyOption = RoutingPolicy | string | Array<RoutingPolicy | string> | PolicyFile;

function isPolicyFile(option: PolicyOption): option is PolicyFile {
  return (
    typeof option === 'object' && option !== null && !Array.isArray(option) && (option as PolicyFile).format === POLICY_FILE_FORMAT
  );
}

/** One checked policy per MoE layer; the layers' trained policies when `option` is undefined. */
export function resolvePolicies(
  option: PolicyOption | undefined,
  layers: PolicyLayer[],
): RoutingPolicy[] {
  if (option === undefined) return layers.map((l) => l.policy);
  if (typeof option === 'string' && option.includes(',')) option = option.split(',').map((part) => part.trim());
  const one = (p: RoutingPolicy | string) => (typeof p === 'string' ? parsePolicy(p) : p);
  if (isPolicyFile(option)) {
    const expected = layers.map((l) => l.layer).join(',');
    if (!Array.isArray(option.layers) || !Array.isArray(option.policies) || option.policies.length !== layers.length) {
      throw new DynamoeError('ERR_DYNAMOE_POLICY', 'a policy file needs "layers" and "policies" arrays, one entry per MoE layer');
    }
    if (option.layers.join(',') !== expected) {
      throw new DynamoeError(
        'ERR_DYNAMOE_POLICY',
        `the policy file is for MoE layers [${option.layers.join(', ')}], this model's are [${expected}]`,
      );
    }
    return option.policies.map((p, i) => checkForLayer(p, layers[i]));
  }
  if (Array.isArray(option)) {
    if (option.length !== layers.length) {
      throw new DynamoeError(
        'ERR_DYNAMOE_POLICY',
        `a per-layer policy list needs one policy per MoE layer (${layers.length}), got ${option.length}`,
      );
    }
    return option.map((p, i) => checkForLayer(one(p), layers[i]));
  }
  const policy = one(option);
  return layers.map((l) => checkForLayer(policy, l));
}

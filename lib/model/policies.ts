// The routing policy option of loadModel / forward / generate: one policy for every MoE layer, or one per layer.
import { DynamoeError } from '../errors';
import { checkPolicy, parsePolicy, RoutingPolicy } from '../policy';
import { MoELayerSpec } from './spec';

/** A policy object or its short form ('top-p:0.4'); an array gives each MoE layer its own, in layer order. */
export type PolicyOption = RoutingPolicy | string | Array<RoutingPolicy | string>;

/** One checked policy per MoE layer; the layers' trained policies when `option` is undefined. */
export function resolvePolicies(option: PolicyOption | undefined, layers: MoELayerSpec[]): RoutingPolicy[] {
  if (option === undefined) return layers.map((l) => l.policy);
  const one = (p: RoutingPolicy | string) => (typeof p === 'string' ? parsePolicy(p) : p);
  if (Array.isArray(option)) {
    if (option.length !== layers.length) {
      throw new DynamoeError(
        'ERR_DYNAMOE_POLICY',
        `a per-layer policy list needs one policy per MoE layer (${layers.length}), got ${option.length}`,
      );
    }
    return option.map((p, i) => checkPolicy(one(p), layers[i].experts));
  }
  const policy = one(option);
  return layers.map((l) => checkPolicy(policy, l.experts));
}

/**
 * dynamoe: Mixture-of-Experts inference for Node.js with dynamic (top-p / threshold) expert routing.
 * @packageDocumentation
 */
export { DynamoeError } from './errors';
export type { ErrorCode } from './errors';
export { route } from './routing';
export type { RoutingResult, RouteOptions } from './routing';
export { parsePolicy, policyLabel } from './policy';
export type { RoutingPolicy, TopKPolicy, TopPPolicy, ThresholdPolicy } from './policy';
export { MoELayer } from './moe-layer';
export type {
  MoELayerWeights,
  SharedExpertWeights,
  WeightData,
  ForwardOptions,
  ForwardWork,
  MoEForwardResult,
} from './moe-layer';
export { toBf16, fromBf16, toF16, fromF16 } from './dtype';
export type { DType } from './dtype';
export { setThreads, getThreads, cpuInfo } from './runtime';
export type { CpuInfo } from './runtime';

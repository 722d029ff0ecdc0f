/**
 * dynamoe: Mixture-of-Experts inference for Node.js with dynamic (top-p / threshold) expert routing.
 * @packageDocumentation
 */
export { DynamoeError } from './errors';
export type { ErrorCode } from './errors';
export { route } from './layer/route';
export type { RoutingResult, RouteOptions } from './layer/route';
export { routerLosses } from './layer/router-losses';
export type { RouterLosses, RouterLossOptions } from './layer/router-losses';
export { parsePolicy, policyLabel } from './policy/short-form';
export type { RoutingPolicy, TopKPolicy, TopPPolicy, ThresholdPolicy } from './policy/routing-policy';
export { MoELayer } from './layer/moe-layer';
export type {
  MoELayerWeights,
  SharedExpertWeights,
  WeightData,
  ForwardOptions,
  ForwardWork,
  MoEForwardResult,
  MoELayerOptions,
  ProfileOptions,
} from './layer/moe-layer';
export type { StageTimes } from './addon/native-surface';
export { toBf16, fromBf16, toF16, fromF16 } from './dtype';
export type { DType } from './dtype';
export { setThreads, getThreads, cpuInfo, setCpuIsa, setQuantActivations } from './backend/cpu-settings';
export type { CpuInfo, CpuIsa, QuantActivations } from './backend/cpu-settings';
export { backendInfo, loadBackend } from './backend/backend-info';
export type { BackendInfo, BinaryInfo, GpuInfo } from './backend/backend-info';
export type { Device } from './device';
export { loadModel } from './model/load-model';
export type { LoadModelOptions } from './model/load-model';
export { Model, Generation } from './model/model';
export type {
  ModelForwardOptions,
  ModelForwardResult,
  GenerateOptions,
  GeneratedToken,
  TokenLogprob,
  GenerationSummary,
  ModelInfo,
} from './model/model';
export type { PolicyOption } from './policy/per-layer';
export type { RoutingStats, LayerRoutingStats } from './model/routing-stats';
export type { SamplingOptions } from './model/sampling';
export type { ModelSpec, FeedForwardSpec, MoELayerSpec, DenseLayerSpec } from './model/spec';
export type { Tokenizer, ChatMessage, StreamDecoder } from './tokenizer/tokenizer';
export type { ScoreOptions, ScoreResult } from './model/model';
export { createSyntheticModel } from './model/synthetic-model';
export type { SyntheticModelOptions } from './model/synthetic-model';
export { textWindows } from './toolkit/text-windows';
export type { TextWindowOptions } from './toolkit/text-windows';
export { evaluatePolicy } from './toolkit/evaluate-policy';
export type { PolicyEvaluation } from './toolkit/evaluate-policy';
export { runSweep } from './toolkit/sweep';
export type { SweepPoint, SweepReport, SweepProgress } from './toolkit/sweep';
export { sweepChart } from './toolkit/sweep-chart';
export { parsePolicyList } from './policy/policy-list';
export { calibrate } from './toolkit/calibrate';
export type { CalibrateOptions, CalibrationResult, CalibrationCandidate, LayerSensitivity } from './toolkit/calibrate';
export { readPolicyFile, writePolicyFile } from './policy/policy-file';
export type { PolicyFile } from './policy/policy-file';
export { startServer } from './serve/server';
export type { RunningServer } from './serve/server';
export type { ServeOptions, RequestRecord } from './serve/serve-options';

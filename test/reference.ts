// Plain float64 reference for the routing contract (shared/docs/ROUTING.md) and the MoE layer, written from the
// contract and independent of lib/, so the tests can hold the native code to it. Also: a seeded RNG, bf16/f16
// round-to-nearest-even helpers, and "fragile token" detectors for the cases where an fp32 implementation may
// legitimately decide differently from float64 (a cumulative sum that lands on p, a near-tie at the cut).
// One concern per file under reference/; this module re-exports them.

export * from './reference/policy';
export * from './reference/random';
export * from './reference/routing';
export * from './reference/fragility';
export * from './reference/dtype';
export * from './reference/layer';
export * from './reference/scores';

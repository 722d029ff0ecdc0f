// Float64 test reference: Policies (the same shape as the public API, declared here so the reference does not import lib/)

export type RefPolicy =
  | { kind: 'top-k'; k: number; normalize?: boolean; scale?: number }
  | { kind: 'top-p'; p: number; minExperts?: number; maxExperts?: number; normalize?: boolean }
  | { kind: 'threshold'; tau: number; minExperts?: number; maxExperts?: number; normalize?: boolean };

export function kMaxOf(policy: RefPolicy, experts: number): number {
  return policy.kind === 'top-k' ? policy.k : policy.maxExperts ?? experts;
}

export function describePolicy(policy: RefPolicy): string {
  const parts = Object.entries(policy)
    .filter(([key]) => key !== 'kind')
    .map(([key, value]) => `${key}=${value}`);
  return `${policy.kind}(${parts.join(',')})`;
}

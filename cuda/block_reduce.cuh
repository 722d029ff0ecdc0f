// Reductions over a thread block whose result every thread gets, the same bits every run.
#pragma once

namespace dynamoe::cuda {

// The largest of every thread's `value` (exact in any order): a butterfly in each warp, then the warps' maxima.
// `shared` holds Threads / 32 floats; it may be reused once this returns.
template <int Threads>
__device__ __forceinline__ float blockMaxOf(float value, float* shared) {
  constexpr int kWarpSize = 32;
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  }
  if (threadIdx.x % kWarpSize == 0) shared[threadIdx.x / kWarpSize] = value;
  __syncthreads();
  float result = shared[0];
  for (int w = 1; w < Threads / kWarpSize; ++w) result = fmaxf(result, shared[w]);
  __syncthreads();  // every thread has read `shared` before a later reduction reuses it
  return result;
}

}  // namespace dynamoe::cuda

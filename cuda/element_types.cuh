// Device helpers shared by the kernels that read or write f32, f16 and bf16 tensors: scalar conversions
// (round to nearest even), 16-byte vectors widened to floats, and the SiLU of the SwiGLU epilogue.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace dynamoe::cuda {

template <typename T>
struct ElementOps;

template <>
struct ElementOps<float> {
  __device__ __forceinline__ static float toFloat(float value) { return value; }
  __device__ __forceinline__ static float fromFloat(float value) { return value; }
};

template <>
struct ElementOps<__half> {
  __device__ __forceinline__ static float toFloat(__half value) { return __half2float(value); }
  __device__ __forceinline__ static __half fromFloat(float value) { return __float2half_rn(value); }
};

template <>
struct ElementOps<__nv_bfloat16> {
  __device__ __forceinline__ static float toFloat(__nv_bfloat16 value) { return __bfloat162float(value); }
  __device__ __forceinline__ static __nv_bfloat16 fromFloat(float value) { return __float2bfloat16_rn(value); }
};

// Elements in one 16-byte load (the widest a thread can issue): 4 floats or 8 halves.
template <typename T>
constexpr int kElementsPerVector = 16 / static_cast<int>(sizeof(T));

// Widens the kElementsPerVector<T> elements packed in `raw` (in memory order) to floats.
template <typename T>
__device__ __forceinline__ void widenVector(const uint4& raw, float (&out)[kElementsPerVector<T>]);

template <>
__device__ __forceinline__ void widenVector<float>(const uint4& raw, float (&out)[4]) {
  out[0] = __uint_as_float(raw.x);
  out[1] = __uint_as_float(raw.y);
  out[2] = __uint_as_float(raw.z);
  out[3] = __uint_as_float(raw.w);
}

template <>
__device__ __forceinline__ void widenVector<__half>(const uint4& raw, float (&out)[8]) {
  const __half2* pairs = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
  for (int p = 0; p < 4; ++p) {
    const float2 pair = __half22float2(pairs[p]);
    out[2 * p] = pair.x;
    out[2 * p + 1] = pair.y;
  }
}

template <>
__device__ __forceinline__ void widenVector<__nv_bfloat16>(const uint4& raw, float (&out)[8]) {
  const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int p = 0; p < 4; ++p) {
    const float2 pair = __bfloat1622float2(pairs[p]);
    out[2 * p] = pair.x;
    out[2 * p + 1] = pair.y;
  }
}

// silu(g) = g / (1 + exp(-g)), with the accurate expf: the CPU reference uses std::exp.
__device__ __forceinline__ float silu(float gate) { return gate / (1.0f + expf(-gate)); }

}  // namespace dynamoe::cuda

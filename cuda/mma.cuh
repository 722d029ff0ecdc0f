// Warp-level tensor-core primitives for sm_80+: cp.async global->shared copies, ldmatrix, and mma.sync m16n8k16
// (f16/bf16 in, fp32 accumulate). Thin wrappers over the PTX instructions, with the fragment layouts they imply.
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"), with g = lane / 4 and
// t = lane % 4; "[r][c..c+1]" is one 32-bit register holding two 16-bit elements, the lower column in the low half:
//   A, 16x16 (m x k), row-major:   a[0] = A[g][2t..2t+1]      a[1] = A[g+8][2t..2t+1]
//                                  a[2] = A[g][2t+8..2t+9]    a[3] = A[g+8][2t+8..2t+9]
//     (PTX: row = g for elements a0,a1,a4,a5 else g+8; col = 2t + (i & 1), + 8 for i >= 4; 2 elements a register.)
//   B, 16x8 (k x n), "col" = stored n-major with k contiguous, so B[k][n] = W[n][k]:
//                                  b[0] = W[g][2t..2t+1]      b[1] = W[g][2t+8..2t+9]
//     (PTX: row (k) = 2t + (i & 1), + 8 for i >= 2; col (n) = g.)
//   C/D, 16x8 fp32:                c[0..1] = C[g][2t..2t+1]   c[2..3] = C[g+8][2t..2t+1]
//     (PTX: row = g for c0,c1 else g+8; col = 2t + (i & 1).)
//   ldmatrix.m8n8.x4.b16: lanes 8j..8j+7 give the addresses of rows 0..7 of matrix j (16 bytes each); register j of
//     every lane receives matrix j's row g, elements 2t..2t+1. So one x4 load over row-major 8x8 blocks yields
//     exactly the A fragment (matrices: rows 0-7/k 0-7, rows 8-15/k 0-7, rows 0-7/k 8-15, rows 8-15/k 8-15) or two
//     B fragments of a k-contiguous [n][k] tile (n 0-7/k 0-7, n 0-7/k 8-15, n 8-15/k 0-7, n 8-15/k 8-15).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace dynamoe::cuda::mma {

// 32-bit shared-window address: what the .shared forms of cp.async and ldmatrix take.
__device__ __forceinline__ uint32_t sharedAddress(const void* pointer) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(pointer));
}

// Copies 16 bytes global -> shared without staging in registers; when !valid nothing is read and the 16 bytes are
// zero-filled (src-size 0), which is how rows past a tile's end become zeros. .cg: cached in L2 only, the data is
// consumed once from shared memory; L2::128B prefetches the neighbouring sector the next k stage reads.
__device__ __forceinline__ void copyAsync16(uint32_t sharedDst, const void* globalSrc, bool valid) {
  const uint32_t srcBytes = valid ? 16u : 0u;
  asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16, %2;\n" ::"r"(sharedDst),
               "l"(__cvta_generic_to_global(globalSrc)), "r"(srcBytes)
               : "memory");
}

// Stores 16 bytes from registers into shared memory (what a tile made in registers, such as dequantized weights,
// is written with); volatile and a memory clobber keep it before the barrier that publishes it.
__device__ __forceinline__ void storeShared16(uint32_t sharedDst, const uint4& value) {
  asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(sharedDst), "r"(value.x), "r"(value.y),
               "r"(value.z), "r"(value.w)
               : "memory");
}

// Closes the group of cp.async issued since the previous commit (possibly empty, which keeps group counts fixed).
__device__ __forceinline__ void commitAsync() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// Waits until at most `Pending` of this thread's most recent groups are still in flight (older ones are complete).
template <int Pending>
__device__ __forceinline__ void waitAsync() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending) : "memory");
}

// Four 8x8 b16 matrices; `rowAddress` is this lane's row (lane 8j + r -> row r of matrix j), 16-byte aligned.
// volatile: it reads shared memory written by cp.async, so it must stay behind the barrier that publishes it.
__device__ __forceinline__ void loadMatrixX4(uint32_t (&fragment)[4], uint32_t rowAddress) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(fragment[0]), "=r"(fragment[1]), "=r"(fragment[2]), "=r"(fragment[3])
               : "r"(rowAddress));
}

// The same four matrices, each transposed on the way: register j of every lane receives column g of matrix j, rows
// 2t..2t+1. Over a row-major [k][n] tile (rows k, n contiguous) that is the B fragment of k 0-7 / k 8-15 of an n
// block: what P V needs of V stored [key][d].
__device__ __forceinline__ void loadMatrixX4Transposed(uint32_t (&fragment)[4], uint32_t rowAddress) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(fragment[0]), "=r"(fragment[1]), "=r"(fragment[2]), "=r"(fragment[3])
               : "r"(rowAddress));
}

// acc (16x8 fp32, C/D layout) += A (16x16, a[4]) x B (16x8, b0 b1), in the element type T (__half or __nv_bfloat16).
template <typename T>
__device__ void mmaM16N8K16(float (&acc)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);

template <>
__device__ __forceinline__ void mmaM16N8K16<__half>(float (&acc)[4], const uint32_t (&a)[4], uint32_t b0,
                                                    uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <>
__device__ __forceinline__ void mmaM16N8K16<__nv_bfloat16>(float (&acc)[4], const uint32_t (&a)[4], uint32_t b0,
                                                           uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

}  // namespace dynamoe::cuda::mma

// AVX2 + FMA + F16C tile kernels (only called when the CPU reports AVX2 and FMA).
#include <immintrin.h>

#include "tile_family.h"

namespace dynamoe::cpu {

namespace {

constexpr int kMaxRows = 3;  // 3 rows x 4 registers = 12 accumulators of the 16 ymm registers

// exp(x) (Cephes expf polynomial); 2^n built in the exponent bits.
inline __m256 expPs(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3365447504f)), _mm256_set1_ps(88.3762626647949f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500E-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
  const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), _mm256_set1_ps(1.0f));
  const __m256i exponent = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(exponent));
}

inline __m256 siluPs(__m256 g) {
  const __m256 negative = _mm256_sub_ps(_mm256_setzero_ps(), g);
  return _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), expPs(negative)));
}

inline __m256 widenBf16(__m128i bits) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16));
}

template <DType W>
inline void loadPanelRow(const void* panel, size_t kk, __m256 (&b)[4]) {
  if constexpr (W == DType::F32) {
    const float* p = static_cast<const float*>(panel) + kk * kPanelWidth;
    #pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) b[c] = _mm256_loadu_ps(p + 8 * c);
  } else {
    const __m128i* p = reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(panel) + kk * kPanelWidth);
    #pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      const __m128i bits = _mm_loadu_si128(p + c);
      if constexpr (W == DType::BF16) {
        b[c] = widenBf16(bits);
      } else {
        b[c] = _mm256_cvtph_ps(bits);
      }
    }
  }
}

template <DType W, int MR>
struct Tile {
  static void run(const TileJob& job);
};

template <DType W, int MR>
void Tile<W, MR>::run(const TileJob& job) {
  __m256 acc[MR][4];
  const float* rowPtr[MR];
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    rowPtr[r] = job.rows[r];
    #pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      acc[r][c] = job.first ? _mm256_setzero_ps() : _mm256_loadu_ps(job.partial + r * kPanelWidth + 8 * c);
    }
  }
  // Locals, not job fields: lets the compiler keep every accumulator in a register across the loop.
  const void* const panel = job.panel;
  const int k = job.k;
  for (int kk = 0; kk < k; ++kk) {
    __m256 b[4];
    loadPanelRow<W>(panel, static_cast<size_t>(kk), b);
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m256 a = _mm256_broadcast_ss(rowPtr[r] + kk);
      #pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) acc[r][c] = _mm256_fmadd_ps(a, b[c], acc[r][c]);
    }
  }
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    if (!job.last) {
      #pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) _mm256_storeu_ps(job.partial + r * kPanelWidth + 8 * c, acc[r][c]);
    } else if (job.epilogue == Epilogue::SwiGlu) {
      _mm256_storeu_ps(job.out[r], _mm256_mul_ps(siluPs(acc[r][0]), acc[r][2]));
      _mm256_storeu_ps(job.out[r] + 8, _mm256_mul_ps(siluPs(acc[r][1]), acc[r][3]));
    } else {
      const __m256 s = _mm256_set1_ps(job.rowScale[r]);
      #pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) _mm256_storeu_ps(job.out[r] + 8 * c, _mm256_mul_ps(acc[r][c], s));
    }
  }
}

template <DType W>
struct Widen {
  static void run(const void* panel, int k, float* out) {
    for (int kk = 0; kk < k; ++kk) {
      __m256 b[4];
      loadPanelRow<W>(panel, static_cast<size_t>(kk), b);
      for (int c = 0; c < 4; ++c) _mm256_storeu_ps(out + static_cast<size_t>(kk) * kPanelWidth + 8 * c, b[c]);
    }
  }
};

}  // namespace

const TileKernels& avx2TileKernels() {
  static const TileKernels kernels = tileFamily<Tile, Widen, kMaxRows>(Isa::Avx2);
  return kernels;
}

}  // namespace dynamoe::cpu

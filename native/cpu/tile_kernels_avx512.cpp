// AVX-512 tile kernels (compiled with AVX-512 flags; only called when the CPU reports AVX-512 F/BW/VL/DQ).
// bf16 and f16 weights are widened to f32 in registers, so the math matches the f32 path exactly.
#include <immintrin.h>

#include "tile_family.h"

namespace dynamoe::cpu {

namespace {

constexpr int kMaxRows = 8;  // 8 rows x 2 registers = 16 accumulators of 32

// exp(x) to ~1 ulp over the float range (Cephes expf polynomial; 2^n applied with scalef).
inline __m512 expPs(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3365447504f)), _mm512_set1_ps(88.3762626647949f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500E-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(y, n);
}

inline __m512 siluPs(__m512 g) {
  const __m512 negative = _mm512_sub_ps(_mm512_setzero_ps(), g);
  return _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), expPs(negative)));
}

inline __m512 widenBf16(__m256i bits) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
}

template <DType W>
inline void loadPanelRow(const void* panel, size_t kk, __m512& lo, __m512& hi) {
  if constexpr (W == DType::F32) {
    const float* p = static_cast<const float*>(panel) + kk * kPanelWidth;
    lo = _mm512_loadu_ps(p);
    hi = _mm512_loadu_ps(p + 16);
  } else {
    const __m256i* p = reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(panel) + kk * kPanelWidth);
    const __m256i first = _mm256_loadu_si256(p);
    const __m256i second = _mm256_loadu_si256(p + 1);
    if constexpr (W == DType::BF16) {
      lo = widenBf16(first);
      hi = widenBf16(second);
    } else {
      lo = _mm512_cvtph_ps(first);
      hi = _mm512_cvtph_ps(second);
    }
  }
}

template <DType W, int MR>
struct Tile {
  static void run(const TileJob& job);
};

template <DType W, int MR>
void Tile<W, MR>::run(const TileJob& job) {
  __m512 acc[MR][2];
  const float* rowPtr[MR];
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    rowPtr[r] = job.rows[r];
    const float* partial = job.partial + r * kPanelWidth;
    acc[r][0] = job.first ? _mm512_setzero_ps() : _mm512_loadu_ps(partial);
    acc[r][1] = job.first ? _mm512_setzero_ps() : _mm512_loadu_ps(partial + 16);
  }
  // Locals, not job fields: lets the compiler keep every accumulator in a register across the loop.
  const void* const panel = job.panel;
  const int k = job.k;
  for (int kk = 0; kk < k; ++kk) {
    __m512 lo, hi;
    loadPanelRow<W>(panel, static_cast<size_t>(kk), lo, hi);
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512 a = _mm512_set1_ps(rowPtr[r][kk]);
      acc[r][0] = _mm512_fmadd_ps(a, lo, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(a, hi, acc[r][1]);
    }
  }
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    if (!job.last) {
      _mm512_storeu_ps(job.partial + r * kPanelWidth, acc[r][0]);
      _mm512_storeu_ps(job.partial + r * kPanelWidth + 16, acc[r][1]);
    } else if (job.epilogue == Epilogue::SwiGlu) {
      _mm512_storeu_ps(job.out[r], _mm512_mul_ps(siluPs(acc[r][0]), acc[r][1]));
    } else {
      const __m512 s = _mm512_set1_ps(job.rowScale[r]);
      _mm512_storeu_ps(job.out[r], _mm512_mul_ps(acc[r][0], s));
      _mm512_storeu_ps(job.out[r] + 16, _mm512_mul_ps(acc[r][1], s));
    }
  }
}

template <DType W>
struct Widen {
  static void run(const void* panel, int k, float* out) {
    for (int kk = 0; kk < k; ++kk) {
      __m512 lo, hi;
      loadPanelRow<W>(panel, static_cast<size_t>(kk), lo, hi);
      _mm512_storeu_ps(out + static_cast<size_t>(kk) * kPanelWidth, lo);
      _mm512_storeu_ps(out + static_cast<size_t>(kk) * kPanelWidth + 16, hi);
    }
  }
};

}  // namespace

const TileKernels& avx512TileKernels() {
  static const TileKernels kernels = tileFamily<Tile, Widen, kMaxRows>(Isa::Avx512);
  return kernels;
}

}  // namespace dynamoe::cpu

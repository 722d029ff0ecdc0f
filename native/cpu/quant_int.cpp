// The scalar integer kernels (the reference the SIMD ones follow), the choice of kernels per family, and the
// process-wide switch between the integer and the f32 path.
#include "quant_int.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "cpu_features.h"

namespace dynamoe::cpu {

namespace {

inline float half(const uint8_t* p) { return f16ToF32(static_cast<uint16_t>(p[0] | (p[1] << 8))); }
inline float rowScale(const uint8_t* row, int k, int block) {
  float d;
  std::memcpy(&d, row + actScalesOffset(k) + sizeof(float) * block, sizeof d);
  return d;
}
inline int16_t rowSum16(const uint8_t* row, int k, int group) {
  int16_t s;
  std::memcpy(&s, row + actSumsOffset(ActQuant::Q8_K, k) + sizeof(int16_t) * group, sizeof s);
  return s;
}

// The signed codes of a 32-value block of Q8_0, Q4_0 or MXFP4 (MXFP4: the doubled E2M1 values) and its scale.
float smallBlock(QuantType type, const uint8_t* b, int* codes) {
  switch (type) {
    case QuantType::Q8_0:
      for (int j = 0; j < 32; ++j) codes[j] = static_cast<int8_t>(b[2 + j]);
      return half(b);
    case QuantType::Q4_0:
      for (int j = 0; j < 16; ++j) {
        codes[j] = (b[2 + j] & 0xF) - 8;
        codes[j + 16] = (b[2 + j] >> 4) - 8;
      }
      return half(b);
    default: {  // MXFP4
      static constexpr int8_t kValues[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
      for (int j = 0; j < 16; ++j) {
        codes[j] = kValues[b[1 + j] & 0xF];
        codes[j + 16] = kValues[b[1 + j] >> 4];
      }
      return std::ldexp(1.0f, static_cast<int>(b[0]) - 128);
    }
  }
}

}  // namespace

void quantIntDotScalar(const QuantIntJob& job) {
  const QuantTraits traits = quantTraits(job.type);
  const int blocks = job.k / traits.blockElements;
  for (int c = 0; c < job.columns; ++c) {
    for (int r = 0; r < job.rowCount; ++r) {
      const uint8_t* row = job.rows[r];
      const int8_t* q = reinterpret_cast<const int8_t*>(row);
      const uint8_t* w = job.weights + c * job.weightStride;
      float acc = 0.0f;
      for (int blk = 0; blk < blocks; ++blk, w += traits.blockBytes, q += traits.blockElements) {
        const float da = rowScale(row, job.k, blk);
        if (job.type == QuantType::Q4_K || job.type == QuantType::Q5_K) {
          const bool five = job.type == QuantType::Q5_K;
          int sum = 0, mins = 0;
          for (int j = 0; j < 8; ++j) {
            int sc, mn;
            quant_detail::scaleMin(j, w + 4, &sc, &mn);
            const uint8_t* qs = w + (five ? 48 : 16) + 32 * (j / 2);
            const uint8_t* qh = w + 16;
            int s = 0;
            for (int l = 0; l < 32; ++l) {
              const int code = ((j % 2 == 0) ? (qs[l] & 0xF) : (qs[l] >> 4)) + (five && ((qh[l] >> j) & 1) ? 16 : 0);
              s += code * q[32 * j + l];
            }
            sum += sc * s;
            mins += mn * (rowSum16(row, job.k, 16 * blk + 2 * j) + rowSum16(row, job.k, 16 * blk + 2 * j + 1));
          }
          acc += half(w) * da * static_cast<float>(sum);
          acc -= half(w + 2) * da * static_cast<float>(mins);
        } else if (job.type == QuantType::Q6_K) {
          const int8_t* sc = reinterpret_cast<const int8_t*>(w + 192);
          int sum = 0;
          for (int n = 0; n < 2; ++n) {
            const uint8_t* ql = w + 64 * n;
            const uint8_t* qh = w + 128 + 32 * n;
            for (int l = 0; l < 32; ++l) {
              const int e = 128 * n + l;
              const int q1 = (ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4);
              const int q2 = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
              const int q3 = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
              const int q4 = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
              sum += sc[e / 16] * (q1 - 32) * q[e] + sc[(e + 32) / 16] * (q2 - 32) * q[e + 32] +
                     sc[(e + 64) / 16] * (q3 - 32) * q[e + 64] + sc[(e + 96) / 16] * (q4 - 32) * q[e + 96];
            }
          }
          acc += half(w + 208) * da * static_cast<float>(sum);
        } else {
          int codes[32];
          const float dw = smallBlock(job.type, w, codes);
          int sum = 0;
          for (int j = 0; j < 32; ++j) sum += codes[j] * (static_cast<uint8_t>(q[j]) - 128);  // stored q + 128
          acc += dw * da * static_cast<float>(sum);
        }
      }
      job.out[c * kQuantIntRows + r] = acc;
    }
  }
}

QuantIntDotFn quantIntDotFor(Isa isa) {
#if defined(DYNAMOE_X86_KERNELS)
  if ((isa == Isa::Avx512 || isa == Isa::Avx512Bf16) && cpuFeatures().avx512vnni) return quantIntDotAvx512Vnni;
  if (isa == Isa::Avx2 && cpuFeatures().avxvnni) return quantIntDotAvxVnni;
  if (isa != Isa::Scalar) return quantIntDotAvx2;
#endif
  (void)isa;
  return quantIntDotScalar;
}

QuantizeRowFn quantizeRowFor(Isa isa) {
#if defined(DYNAMOE_X86_KERNELS)
  if ((isa == Isa::Avx512 || isa == Isa::Avx512Bf16) && cpuFeatures().avx512vnni) return quantizeActivationRowAvx512;
#endif
  (void)isa;
  return quantizeActivationRow;
}

namespace {
std::atomic<bool>& integerDots() {
  static std::atomic<bool> on{[] {
    const char* env = std::getenv("DYNAMOE_QUANT_ACTIVATIONS");
    return !(env != nullptr && std::strcmp(env, "f32") == 0);
  }()};
  return on;
}
}  // namespace

bool quantIntegerDots() { return integerDots().load(std::memory_order_acquire); }
void setQuantIntegerDots(bool on) { integerDots().store(on, std::memory_order_release); }

}  // namespace dynamoe::cpu

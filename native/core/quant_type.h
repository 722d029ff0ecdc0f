// GGUF quantized weight types (ggml's block formats): their names, block sizes and row sizes.
// A quantized matrix is [rows][cols] with each row a run of cols / blockElements blocks, as in the file.
#pragma once

#include <cstddef>
#include <string>
#include <type_traits>

#include "host_device.h"

namespace dynamoe {

enum class QuantType { None, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, MXFP4 };

struct QuantTraits {
  const char* name;
  int blockElements;
  int blockBytes;
};

DYNAMOE_HOST_DEVICE constexpr QuantTraits quantTraits(QuantType t) {
  switch (t) {
    case QuantType::Q8_0: return {"q8_0", 32, 34};
    case QuantType::Q4_0: return {"q4_0", 32, 18};
    case QuantType::Q4_1: return {"q4_1", 32, 20};
    case QuantType::Q5_0: return {"q5_0", 32, 22};
    case QuantType::Q5_1: return {"q5_1", 32, 24};
    case QuantType::Q2_K: return {"q2_k", 256, 84};
    case QuantType::Q3_K: return {"q3_k", 256, 110};
    case QuantType::Q4_K: return {"q4_k", 256, 144};
    case QuantType::Q5_K: return {"q5_k", 256, 176};
    case QuantType::Q6_K: return {"q6_k", 256, 210};
    case QuantType::IQ4_NL: return {"iq4_nl", 32, 18};
    case QuantType::IQ4_XS: return {"iq4_xs", 256, 136};
    case QuantType::MXFP4: return {"mxfp4", 32, 17};
    case QuantType::None: break;
  }
  return {"none", 1, 0};
}

// Returns false when `name` is not a quantized type dynamoe runs.
inline bool parseQuantType(const std::string& name, QuantType* out) {
  for (int i = 1; i <= static_cast<int>(QuantType::MXFP4); ++i) {
    const auto t = static_cast<QuantType>(i);
    if (name == quantTraits(t).name) {
      *out = t;
      return true;
    }
  }
  return false;
}

// Calls f(std::integral_constant<QuantType, t>{}) for a quantized t, so code templated on the type (a kernel per
// type) is picked once; returns false for None.
template <typename F>
bool visitQuantType(QuantType t, F&& f) {
  switch (t) {
    case QuantType::Q8_0: f(std::integral_constant<QuantType, QuantType::Q8_0>{}); return true;
    case QuantType::Q4_0: f(std::integral_constant<QuantType, QuantType::Q4_0>{}); return true;
    case QuantType::Q4_1: f(std::integral_constant<QuantType, QuantType::Q4_1>{}); return true;
    case QuantType::Q5_0: f(std::integral_constant<QuantType, QuantType::Q5_0>{}); return true;
    case QuantType::Q5_1: f(std::integral_constant<QuantType, QuantType::Q5_1>{}); return true;
    case QuantType::Q2_K: f(std::integral_constant<QuantType, QuantType::Q2_K>{}); return true;
    case QuantType::Q3_K: f(std::integral_constant<QuantType, QuantType::Q3_K>{}); return true;
    case QuantType::Q4_K: f(std::integral_constant<QuantType, QuantType::Q4_K>{}); return true;
    case QuantType::Q5_K: f(std::integral_constant<QuantType, QuantType::Q5_K>{}); return true;
    case QuantType::Q6_K: f(std::integral_constant<QuantType, QuantType::Q6_K>{}); return true;
    case QuantType::IQ4_NL: f(std::integral_constant<QuantType, QuantType::IQ4_NL>{}); return true;
    case QuantType::IQ4_XS: f(std::integral_constant<QuantType, QuantType::IQ4_XS>{}); return true;
    case QuantType::MXFP4: f(std::integral_constant<QuantType, QuantType::MXFP4>{}); return true;
    case QuantType::None: break;
  }
  return false;
}

// Bytes of one row of `cols` values (cols a multiple of the block size).
inline size_t quantRowBytes(QuantType t, int cols) {
  const QuantTraits traits = quantTraits(t);
  return static_cast<size_t>(cols / traits.blockElements) * traits.blockBytes;
}

}  // namespace dynamoe

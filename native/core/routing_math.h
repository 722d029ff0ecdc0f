// Softmax arithmetic shared by the CPU and CUDA routers, written so both compute bit-identical probabilities:
// the same exp (basic IEEE operations only, never contracted into FMAs) and the same summation order (32 lanes
// summed in expert order, then the warp's butterfly tree). Identical probabilities make the selected experts
// identical on every backend, ties and top-p cuts included (ROUTING.md).
#pragma once

#include <cstdint>
#include <cstring>

#include "host_device.h"
#include "rounded_ops.h"

namespace dynamoe::routing_math {

// Lanes of the softmax sum: a CUDA warp. Lane l sums experts l, l + 32, l + 64, ... in order.
constexpr int kLanes = 32;

// Products, sums and quotients rounded once (never fused into an FMA), shared with the other same-bits arithmetic.
using rounded::add;
using rounded::div;
using rounded::mul;

// 2^n for n in [-126, 127], from its bits.
DYNAMOE_HOST_DEVICE inline float powerOfTwo(int n) {
  const uint32_t bits = static_cast<uint32_t>(n + 127) << 23;
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

// exp(x) for x <= 0 (a logit minus the row's max), within 2 ulp of the true value, subnormal results included;
// 0 below -104 as for expf. Cody-Waite reduction and a degree-6 polynomial (Cephes expf).
DYNAMOE_HOST_DEVICE inline float routingExp(float x) {
  if (!(x >= -104.0f)) return 0.0f;
  if (x > 0.0f) x = 0.0f;
  const float n = static_cast<float>(static_cast<int>(add(mul(x, 1.44269504088896341f), -0.5f)));
  // Truncation toward zero of x*log2(e) - 0.5 (x <= 0) is round-to-nearest: r stays within [-ln2/2, ln2/2].
  float r = add(x, -mul(n, 0.693359375f));
  r = add(r, mul(n, 2.12194440e-4f));
  const float r2 = mul(r, r);
  float poly = 1.9875691500e-4f;
  poly = add(mul(poly, r), 1.3981999507e-3f);
  poly = add(mul(poly, r), 8.3334519073e-3f);
  poly = add(mul(poly, r), 4.1665795894e-2f);
  poly = add(mul(poly, r), 1.6666665459e-1f);
  poly = add(mul(poly, r), 5.0000001201e-1f);
  const float y = add(add(mul(poly, r2), r), 1.0f);
  // Scaling by 2^n (n in [-150, 0]) from exponent bits: exact while normal; below 2^-126 the second product is the
  // only rounding, to the subnormal result.
  const int exponent = static_cast<int>(n);
  if (exponent >= -126) return mul(y, powerOfTwo(exponent));
  return mul(mul(y, powerOfTwo(exponent + 64)), powerOfTwo(-64));
}

// sigmoid(x) = 1 / (1 + e^-x), from routingExp of a non-positive argument only (its domain): e^x / (1 + e^x) below 0.
DYNAMOE_HOST_DEVICE inline float routingSigmoid(float x) {
  if (x >= 0.0f) return div(1.0f, add(1.0f, routingExp(-x)));
  const float e = routingExp(x);
  return div(e, add(1.0f, e));
}

// Order of the final 32-lane reduction: offsets 16, 8, 4, 2, 1 (a warp's xor butterfly leaves this value in lane 0).
DYNAMOE_HOST_DEVICE inline double reduceLanes(double* lanes) {
  for (int offset = kLanes / 2; offset > 0; offset /= 2) {
    for (int l = 0; l < offset; ++l) lanes[l] = lanes[l] + lanes[l + offset];
  }
  return lanes[0];
}

// The fp32 softmax of one row of finite logits in expert order, as every router computes it: exponentials of logit
// minus max, summed lane by lane (expert e into lane e % 32) in double, the lanes reduced in reduceLanes' order.
// Sums are in double: in fp32 the small terms added after a dominant one are lost.
DYNAMOE_HOST_DEVICE inline void softmaxRow(const float* logits, int experts, float* probs) {
  float maxLogit = logits[0];
  for (int e = 1; e < experts; ++e) maxLogit = logits[e] > maxLogit ? logits[e] : maxLogit;
  double lanes[kLanes] = {};
  for (int e = 0; e < experts; ++e) {
    probs[e] = routingExp(add(logits[e], -maxLogit));
    lanes[e % kLanes] += probs[e];
  }
  const double sum = reduceLanes(lanes);
  for (int e = 0; e < experts; ++e) probs[e] = static_cast<float>(probs[e] / sum);
}

}  // namespace dynamoe::routing_math

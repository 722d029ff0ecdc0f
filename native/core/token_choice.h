// Choosing a row's next token from its logits, the same way on both backends: greedy (the first of equal maxima) or
// seeded sampling with temperature, top-k and top-p. The caller draws the uniform number (its seeded generator
// lives with the request), so a choice is a pure function of the logits and that draw.
//
// Sampling, exactly (both backends compute these doubles with IEEE basic operations in this order, and an exp of
// their own, so a row gives the same token on either):
//  1. key(v): the logit, with NaN as -inf and -0 as +0. max: the largest key among ids [0, limit).
//  2. weight(v) = choiceExp((key - max) / temperature) in double; when max is not finite, 1 where key == max, else 0.
//  3. Candidates: when topK restricts (0 < topK < limit) or topP < 1, the ids ranked by descending key (equal keys:
//     lower id first), the first n = topK (or limit) of them; otherwise every id in [0, limit), in id order.
//  4. A chunked running sum over a candidate sequence w[0..n): chunks of kChoiceChunk positions, each summed from
//     its first position on; base[0] = 0, base[c + 1] = base[c] + chunk c's sum; running(i) = base[c] + (chunk c's
//     sum up to i). It never decreases, and running(last) = base[chunks].
//  5. total: base[chunks] of the candidates when topK restricts, else of every id's weight in id order (so top-p
//     alone ranks only the head it keeps, never the whole vocabulary).
//  6. kept: with topP < 1, one past the first ranked position whose running sum exceeds topP * total (n if none);
//     else n. keptTotal = running(kept - 1).
//  7. The token: the candidate at the first position q < kept with running(q) > uniform * keptTotal (else kept - 1).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "host_device.h"
#include "rounded_ops.h"

namespace dynamoe {

// How one row's token is chosen (a step's segment, or a test's row). Plain data: uploaded as is to the GPU.
struct TokenChoice {
  int32_t limit = 0;       // > 0: choose among ids [0, limit) (ids past a tokenizer's vocabulary never); 0: no choice
  int32_t topK = 0;        // keep the topK most likely ids (0: all)
  double temperature = 0;  // 0: greedy
  double topP = 1;         // keep the smallest most likely set whose probability exceeds topP (1: all)
  double uniform = 0;      // the caller's draw in [0, 1)
};

constexpr int kChoiceChunk = 256;

// Internal linkage: each file compiles its own copy (host or device) with its own flags.
namespace {
namespace token_choice {

using rounded::add;
using rounded::div;
using rounded::mul;
using rounded::sub;

DYNAMOE_HOST_DEVICE inline double doubleFromBits(uint64_t bits) {
#ifdef __CUDA_ARCH__
  return __longlong_as_double(static_cast<long long>(bits));
#else
  double value;
  std::memcpy(&value, &bits, 8);
  return value;
#endif
}

}  // namespace token_choice

// Step 1's key: NaN never wins (it sorts as -inf), and the two zeros are one value.
DYNAMOE_HOST_DEVICE inline float choiceKey(float logit) {
  if (logit != logit) return -HUGE_VALF;
  return logit == 0.0f ? 0.0f : logit;
}

// e^x for x <= 0 (NaN: 0), within a few ulp, with the same bits on every backend: x = k ln2 + r, |r| <= ln2 / 2,
// e^r by its Taylor series to r^13 (Horner), times 2^k built from its bits. Below -700 (weights under 1e-304 of the
// largest, which no sum can tell apart) it is 0, so 2^k never leaves the normal range.
DYNAMOE_HOST_DEVICE inline double choiceExp(double x) {
  using namespace token_choice;
  if (!(x > -700.0)) return 0.0;
  if (x >= 0.0) return 1.0;
  constexpr double kLog2e = 1.4426950408889634;
  constexpr double kLn2Hi = 6.93147180369123816490e-01;  // ln 2's upper 32 bits: k * kLn2Hi is exact
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  const double k = floor(add(mul(x, kLog2e), 0.5));  // exact on both backends
  const double r = sub(sub(x, mul(k, kLn2Hi)), mul(k, kLn2Lo));
  // 1/13!, 1/12!, ..., 1/1!, 1/0!
  constexpr double kInverseFactorials[] = {
      1.6059043836821613e-10, 2.08767569878681e-09,  2.505210838544172e-08, 2.755731922398589e-07,
      2.7557319223985893e-06, 2.48015873015873e-05,  1.984126984126984e-04, 1.388888888888889e-03,
      8.333333333333333e-03,  4.1666666666666664e-02, 1.6666666666666666e-01, 0.5,
      1.0,                    1.0};
  double p = kInverseFactorials[0];
  for (int i = 1; i < 14; ++i) p = add(mul(p, r), kInverseFactorials[i]);
  const int exponent = static_cast<int>(k);  // in [-1010, 0]
  return mul(p, doubleFromBits(static_cast<uint64_t>(exponent + 1023) << 52));
}

// Step 2's weight of a key, given the row's largest key.
DYNAMOE_HOST_DEVICE inline double choiceWeight(float key, float maxKey, double temperature) {
  using namespace token_choice;
  if (maxKey == HUGE_VALF || maxKey == -HUGE_VALF) return key == maxKey ? 1.0 : 0.0;
  return choiceExp(div(sub(static_cast<double>(key), static_cast<double>(maxKey)), temperature));
}

// Whether the candidates are ranked (step 3) and how many there are.
DYNAMOE_HOST_DEVICE inline bool choiceRanked(const TokenChoice& choice) {
  return (choice.topK > 0 && choice.topK < choice.limit) || choice.topP < 1.0;
}
DYNAMOE_HOST_DEVICE inline int choiceCandidates(const TokenChoice& choice) {
  return choice.topK > 0 && choice.topK < choice.limit ? choice.topK : choice.limit;
}

// a ranks before b (step 3): a larger key, or an equal key and a lower id.
DYNAMOE_HOST_DEVICE inline bool ranksBefore(float keyA, int32_t idA, float keyB, int32_t idB) {
  return keyA > keyB || (keyA == keyB && idA < idB);
}

// Step 4's sum of chunk c of a candidate sequence (positions [first, end)), from its first position on.
template <typename WeightAt>
DYNAMOE_HOST_DEVICE double choiceChunkSum(const WeightAt& weightAt, int first, int end) {
  double sum = 0.0;
  for (int i = first; i < end; ++i) sum = token_choice::add(sum, weightAt(i));
  return sum;
}

// Step 4's running(i), given base[0..c] of i's chunk c.
template <typename WeightAt>
DYNAMOE_HOST_DEVICE double choiceRunningAt(const WeightAt& weightAt, const double* base, int i) {
  const int c = i / kChoiceChunk;
  return token_choice::add(base[c], choiceChunkSum(weightAt, c * kChoiceChunk, i + 1));
}

// The first position q < end whose running sum exceeds `target`, or -1. `base` holds base[0..c + 1] of every chunk
// c that ends at or before `end`, and base[c] of the chunk `end` falls in.
template <typename WeightAt>
DYNAMOE_HOST_DEVICE int choiceFirstAbove(const WeightAt& weightAt, const double* base, int end, double target) {
  for (int c = 0; c * kChoiceChunk < end; ++c) {
    const int first = c * kChoiceChunk;
    const int last = first + kChoiceChunk < end ? first + kChoiceChunk : end;
    // A whole chunk whose running sum ends at or below the target holds no such position (running never falls).
    if (last == first + kChoiceChunk && !(base[c + 1] > target)) continue;
    double partial = 0.0;
    for (int i = first; i < last; ++i) {
      partial = token_choice::add(partial, weightAt(i));
      if (token_choice::add(base[c], partial) > target) return i;
    }
  }
  return -1;
}

}  // namespace

// The CPU's choice for one row of `choice.limit` logits (greedy: the first of equal maxima, NaN never replacing the
// best so far; else the sampling above).
int32_t chooseToken(const float* logits, const TokenChoice& choice);

}  // namespace dynamoe

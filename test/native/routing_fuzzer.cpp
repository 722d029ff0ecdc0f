// libFuzzer target for the native code that consumes untrusted numbers: the routing core (softmax + top-k / top-p /
// threshold with clamps, normalize, scale), the expert plan and combine fed from its result, the router losses and
// the router statistics.
// Inputs pass the same gates as the N-API layer first (sizes as in readRouterScores, validatePolicy as in readPolicy,
// the score checks of route() / routerLosses()); rejected inputs are dropped, accepted ones must satisfy the
// routing contract (README "Routing policies") or the target aborts.
//
// Input bytes (little-endian; missing bytes read as 0):
//   [0] tokens - 1   [1..2] experts (u16, reduced)   [3] flags   [4] score encoding (bits 0-1) and router rule (2-7)
//   [5..6] k  [7..8] minExperts  [9..10] maxExperts (i16 each)   [11..14] p  [15..18] tau  [19..22] scale (f32 bits)
//   [23..] score payload, repeated cyclically to fill tokens x experts (all zeros when empty)
// flags: bit 0 probabilities input, bits 1-2 policy kind (3 = top-k), bit 3 normalize, bit 4 loss gradients,
//        bits 5-6 extra floats per score row (the MoE layer routes padded rows), bit 7 a shared-expert row per token.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "../../native/core/check_finite.h"
#include "../../native/cpu/combine.h"
#include "../../native/cpu/expert_plan.h"
#include "../../native/cpu/router_losses.h"
#include "../../native/core/router_stats.h"
#include "../../native/cpu/routing.h"
#include "../../native/core/errors.h"
#include "../../native/core/router_rule.h"
#include "../../native/core/routing_policy.h"

using namespace dynamoe;

namespace {

// Fuzzing bounds: a subset of what readRouterScores accepts (tokens <= 2^24, experts <= 2^16), kept small so each
// input runs in about a millisecond. Over 64 tokens spans several parallel items of routeTokens.
constexpr int kMaxTokens = 256;
constexpr int kMaxExperts = 512;
constexpr size_t kMaxScores = size_t{1} << 12;

#define FUZZ_CHECK(condition)                                                                  \
  do {                                                                                         \
    if (!(condition)) {                                                                        \
      std::fprintf(stderr, "routing_fuzzer: check failed at line %d: %s\n", __LINE__, #condition); \
      std::abort();                                                                            \
    }                                                                                          \
  } while (0)

class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint8_t u8() { return at_ < size_ ? data_[at_++] : 0; }
  uint16_t u16() { return static_cast<uint16_t>(u8() | (u8() << 8)); }
  int16_t i16() { return static_cast<int16_t>(u16()); }
  float f32() {
    uint32_t bits = 0;
    for (int i = 0; i < 4; ++i) bits |= static_cast<uint32_t>(u8()) << (8 * i);
    float value;
    std::memcpy(&value, &bits, 4);
    return value;
  }
  const uint8_t* rest() const { return data_ + std::min(at_, size_); }
  size_t restSize() const { return size_ - std::min(at_, size_); }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t at_ = 0;
};

// Score values that stress the softmax and the ordering: ties, signed zeros, exp under/overflow, denormals, extremes.
// NaN and infinities are included on purpose: the gates must reject them.
const float kSpecialScores[] = {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, 0.25f, 2.0f, 10.0f, -10.0f, 17.0f, 18.0f,
                                88.0f, -88.0f, 89.0f, -104.0f, 1e-38f, 1e-45f, 1e30f, -1e30f, 1.0f - 1e-7f,
                                std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                                std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                                -std::numeric_limits<float>::infinity()};
constexpr size_t kSpecialCount = sizeof(kSpecialScores) / sizeof(kSpecialScores[0]);

// Encodings of the score payload: 0 raw f32, 1 a table entry per byte, 2 int8 / 4 (many ties), 3 byte / 255 ([0, 1]).
float decodeScore(int encoding, const uint8_t* payload, size_t payloadSize, size_t index) {
  if (payloadSize == 0) return 0.0f;
  if (encoding == 0) {
    if (payloadSize < 4) return static_cast<float>(payload[index % payloadSize]);
    uint32_t bits = 0;
    for (size_t i = 0; i < 4; ++i) bits |= static_cast<uint32_t>(payload[(index * 4 + i) % payloadSize]) << (8 * i);
    float value;
    std::memcpy(&value, &bits, 4);
    return value;
  }
  const uint8_t byte = payload[index % payloadSize];
  if (encoding == 1) return kSpecialScores[byte % kSpecialCount];
  if (encoding == 2) return static_cast<float>(static_cast<int8_t>(byte)) / 4.0f;
  return static_cast<float>(byte) / 255.0f;
}

// The score check of RouteWorker::run (native/route_binding.cpp), which is inline there: logits finite (the same
// predicate as checkFinite), probabilities in [0, 1].
bool routeAcceptsScores(const std::vector<float>& scores, int tokens, int experts, size_t stride,
                        RouterInput input) {
  if (input == RouterInput::Logits) {
    try {
      checkFinite(scores.data(), tokens, experts, stride, "logits", "expert");
    } catch (const Error&) {
      return false;
    }
    return true;
  }
  for (int t = 0; t < tokens; ++t) {
    for (int e = 0; e < experts; ++e) {
      const float v = scores[static_cast<size_t>(t) * stride + e];
      if (!(v >= 0.0f && v <= 1.0f)) return false;
    }
  }
  return true;
}

struct RoutingArrays {
  std::vector<int32_t> ids, counts, expertLoad;
  std::vector<float> weights;
  RoutingOutput output;

  RoutingArrays(int tokens, int experts, int kMax)
      : ids(static_cast<size_t>(tokens) * kMax, 12345), counts(tokens, -7), expertLoad(experts, -7),
        weights(ids.size(), -7.0f) {  // garbage first: routeTokens must write every slot
    output = {kMax, ids.data(), weights.data(), counts.data(), expertLoad.data()};
  }
};

// The routing contract: per token, `count` distinct valid ids in the first slots (clamped as the policy says),
// then -1 / 0; weights non-increasing along the slots, finite and non-negative; expertLoad counts the ids.
void checkRouting(const RoutingArrays& r, int tokens, int experts, const RoutingPolicy& policy,
                  RouterInput input) {
  const int kMax = policy.kMax(experts);
  std::vector<int32_t> load(experts, 0);
  std::vector<uint8_t> seen(experts, 0);
  for (int t = 0; t < tokens; ++t) {
    const int count = r.counts[t];
    FUZZ_CHECK(count >= 1 && count <= kMax);
    if (policy.kind == PolicyKind::TopK) {
      FUZZ_CHECK(count == policy.k);
    } else {
      FUZZ_CHECK(count >= policy.minExperts && count <= policy.maxKept(experts));
    }
    std::fill(seen.begin(), seen.end(), 0);
    for (int j = 0; j < kMax; ++j) {
      const size_t slot = static_cast<size_t>(t) * kMax + j;
      const int id = r.ids[slot];
      const float w = r.weights[slot];
      if (j >= count) {
        FUZZ_CHECK(id == -1 && w == 0.0f);
        continue;
      }
      FUZZ_CHECK(id >= 0 && id < experts);
      FUZZ_CHECK(!seen[id]);
      seen[id] = 1;
      ++load[id];
      FUZZ_CHECK(!std::isnan(w) && w >= 0.0f);
      // Logits give probabilities >= 1/E at the top, so a finite scale and normalisation keep weights finite.
      if (input == RouterInput::Logits) FUZZ_CHECK(std::isfinite(w));
      if (j > 0) FUZZ_CHECK(w <= r.weights[slot - 1]);  // descending probability, times one positive factor
    }
  }
  for (int e = 0; e < experts; ++e) FUZZ_CHECK(r.expertLoad[e] == load[e]);
}

// Routing must not depend on how tokens are split into parallel items: each row routed alone gives the same bits.
void checkRowsIndependent(const std::vector<float>& scores, size_t stride, int tokens, int experts,
                          RouterInput input, const RoutingPolicy& policy, const RoutingArrays& batch) {
  const int kMax = policy.kMax(experts);
  RoutingArrays single(1, experts, kMax);
  for (int t = 0; t < tokens; t += std::max(1, tokens / 8)) {  // a sample of rows keeps this cheap
    cpu::routeTokens(scores.data() + static_cast<size_t>(t) * stride, stride, 1, experts, input, policy,
                     RouterRule{}, single.output);
    FUZZ_CHECK(single.counts[0] == batch.counts[t]);
    const size_t first = static_cast<size_t>(t) * kMax;
    FUZZ_CHECK(std::equal(single.ids.begin(), single.ids.end(), batch.ids.begin() + first));
    FUZZ_CHECK(std::memcmp(single.weights.data(), batch.weights.data() + first, kMax * sizeof(float)) == 0);
  }
}

// The expert plan groups every used slot into its expert's rows, in token order; combine sums them back per token.
void checkPlanAndCombine(const RoutingArrays& r, int tokens, int experts, int sharedRows) {
  const cpu::ExpertPlan plan = cpu::planExpertRows(r.output, tokens, experts, sharedRows);
  FUZZ_CHECK(plan.arrays.expertOffsets[0] == 0);
  for (int e = 0; e < experts; ++e) FUZZ_CHECK(plan.arrays.expertOffsets[e + 1] - plan.arrays.expertOffsets[e] == r.expertLoad[e]);
  int64_t used = 0;
  for (int t = 0; t < tokens; ++t) used += r.counts[t];
  FUZZ_CHECK(plan.routedRows == used);
  FUZZ_CHECK(static_cast<size_t>(plan.rows) == static_cast<size_t>(used) + static_cast<size_t>(sharedRows) * tokens);
  std::vector<uint8_t> rowUsed(static_cast<size_t>(plan.rows), 0);
  const int kMax = r.output.kMax;
  for (int t = 0; t < tokens; ++t) {
    for (int j = 0; j < kMax; ++j) {
      const size_t slot = static_cast<size_t>(t) * kMax + j;
      const int row = plan.arrays.slotRow[slot];
      if (j >= r.counts[t]) {
        FUZZ_CHECK(row == -1);
        continue;
      }
      const int id = r.ids[slot];
      FUZZ_CHECK(row >= plan.arrays.expertOffsets[id] && row < plan.arrays.expertOffsets[id + 1]);
      FUZZ_CHECK(!rowUsed[row]);
      rowUsed[row] = 1;
      FUZZ_CHECK(plan.arrays.rowToken[row] == t);
      FUZZ_CHECK(std::memcmp(&plan.arrays.rowWeight[row], &r.weights[slot], sizeof(float)) == 0);
    }
  }
  for (int e = 0; e < experts; ++e) {
    for (int row = plan.arrays.expertOffsets[e] + 1; row < plan.arrays.expertOffsets[e + 1]; ++row) {
      FUZZ_CHECK(plan.arrays.rowToken[row - 1] < plan.arrays.rowToken[row]);  // token order within an expert
    }
  }
  for (int s = 0; s < sharedRows; ++s) {
    for (int t = 0; t < tokens; ++t) FUZZ_CHECK(plan.arrays.rowToken[plan.routedRows + static_cast<size_t>(s) * tokens + t] == t);
  }

  // Row i of the expert output holds i + 1 in column 0 and 1 in column 1, so each token's sums are known exactly.
  constexpr int kHidden = 2;
  constexpr size_t kRowStride = 3;  // wider than hidden, as the padded GEMM output is
  std::vector<float> rowOutput(static_cast<size_t>(plan.rows) * kRowStride, 0.0f);
  for (size_t row = 0; row < static_cast<size_t>(plan.rows); ++row) {
    rowOutput[row * kRowStride] = static_cast<float>(row + 1);
    rowOutput[row * kRowStride + 1] = 1.0f;
  }
  std::vector<float> out(static_cast<size_t>(tokens) * kHidden, -1.0f);
  cpu::combineExpertRows(plan, r.output, tokens, kHidden, sharedRows, rowOutput.data(), kRowStride,
                         cpu::ZeroExpertRows{experts}, out.data(), kHidden);
  for (int t = 0; t < tokens; ++t) {
    double rowSum = 0.0;
    for (int j = 0; j < r.counts[t]; ++j) rowSum += plan.arrays.slotRow[static_cast<size_t>(t) * kMax + j] + 1;
    for (int s = 0; s < sharedRows; ++s) rowSum += plan.routedRows + static_cast<double>(s) * tokens + t + 1;
    FUZZ_CHECK(out[static_cast<size_t>(t) * kHidden + 1] == static_cast<float>(r.counts[t] + sharedRows));
    // Row sums stay below 2^24 here, so the fp32 sum is exact.
    FUZZ_CHECK(out[static_cast<size_t>(t) * kHidden] == static_cast<float>(rowSum));
  }
}

// Router losses on the same logits: the same selection as routeTokens, probabilities that sum to 1, finite values
// and gradients whose per-token sums vanish (softmax gradients are orthogonal to the all-ones vector).
void checkRouterLosses(const std::vector<float>& logits, int tokens, int experts, const RoutingPolicy& policy,
                       const RoutingArrays& routed, bool gradients) {
  std::vector<double> fraction(experts, -1.0), meanProbability(experts, -1.0);
  std::vector<int32_t> counts(tokens, -1);
  const size_t elements = static_cast<size_t>(tokens) * experts;
  std::vector<float> dynamicGradient(gradients ? elements : 0), balanceGradient(gradients ? elements : 0);
  cpu::RouterLossOutput out;
  out.fraction = fraction.data();
  out.meanProbability = meanProbability.data();
  out.counts = counts.data();
  out.dynamicLossGradient = gradients ? dynamicGradient.data() : nullptr;
  out.loadBalanceLossGradient = gradients ? balanceGradient.data() : nullptr;
  // The gate of RouterLossesWorker::run (native/router_losses_binding.cpp).
  checkFinite(logits.data(), tokens, experts, experts, "logits", "expert");
  const cpu::RouterLossValues values = cpu::computeRouterLosses(logits.data(), tokens, experts, policy, out);

  FUZZ_CHECK(std::equal(counts.begin(), counts.end(), routed.counts.begin()));
  double probabilityTotal = 0.0, fractionTotal = 0.0;
  for (int e = 0; e < experts; ++e) {
    FUZZ_CHECK(fraction[e] >= 0.0 && fraction[e] <= 1.0);
    FUZZ_CHECK(fraction[e] == static_cast<double>(routed.expertLoad[e]) / tokens);
    FUZZ_CHECK(meanProbability[e] >= 0.0 && meanProbability[e] <= 1.0 + 1e-12);
    probabilityTotal += meanProbability[e];
    fractionTotal += fraction[e];
  }
  FUZZ_CHECK(std::fabs(probabilityTotal - 1.0) <= 1e-9);
  FUZZ_CHECK(std::fabs(fractionTotal - values.expertsPerToken) <= 1e-9 * experts);
  FUZZ_CHECK(values.expertsPerToken >= 1.0 && values.expertsPerToken <= policy.kMax(experts));
  FUZZ_CHECK(std::isfinite(values.dynamicLoss) && values.dynamicLoss >= 0.0);
  FUZZ_CHECK(values.dynamicLoss <= std::log(static_cast<double>(experts)) + 1e-9);
  FUZZ_CHECK(std::isfinite(values.loadBalanceLoss) && values.loadBalanceLoss >= 0.0);
  FUZZ_CHECK(values.loadBalanceLoss <= static_cast<double>(experts) * values.expertsPerToken + 1e-9);

  // The MoE layer's router statistics: the same double softmax, summed in another order.
  std::vector<double> probabilitySum(experts, 0.0);
  double entropySum = 0.0;
  accumulateRouterStats(logits.data(), experts, tokens, experts, RouterScoring::Softmax, probabilitySum.data(),
                             &entropySum);
  for (int e = 0; e < experts; ++e) FUZZ_CHECK(std::fabs(probabilitySum[e] / tokens - meanProbability[e]) <= 1e-12);
  FUZZ_CHECK(std::fabs(entropySum / tokens - values.dynamicLoss) <= 1e-12 * (1.0 + values.dynamicLoss));
  if (!gradients) return;
  for (int t = 0; t < tokens; ++t) {
    for (const std::vector<float>* gradient : {&dynamicGradient, &balanceGradient}) {
      const float* row = gradient->data() + static_cast<size_t>(t) * experts;
      double sum = 0.0, magnitude = 0.0;
      for (int e = 0; e < experts; ++e) {
        FUZZ_CHECK(std::isfinite(row[e]));
        sum += row[e];
        magnitude += std::fabs(row[e]);
      }
      // fp32 storage of each term bounds the relative residue; the absolute term covers rows where every term is
      // rounding noise of one sign (a uniform row: log P + H is 0 up to double rounding).
      FUZZ_CHECK(std::fabs(sum) <= 1e-5 * magnitude + 1e-12 * experts * experts / tokens);
    }
  }
}

// A family's rule on the same logits (ruleBits: bits 0-1 scoring, 1 sigmoid, 2 softmax-of-kept, 3 softmax; bit 2 a
// selection bias; bit 3 groups; bit 4 normalise; bit 5 scale 2.5): the contract's structure, the kept groups only,
// normalised sums, rows independent; then a quarter of the experts as identity zero-computation experts through
// the plan and the combine.
void checkRouterRule(const std::vector<float>& scores, size_t stride, int tokens, int experts,
                     const RoutingPolicy& policy, int ruleBits) {
  RouterRule rule;
  rule.scoring = (ruleBits & 3) == 1 ? RouterScoring::Sigmoid
                 : (ruleBits & 3) == 2 ? RouterScoring::SoftmaxOfKept
                                       : RouterScoring::Softmax;
  std::vector<float> bias;
  if (ruleBits & 4) {
    for (int e = 0; e < experts; ++e) bias.push_back(0.1f * std::tanh(scores[e]));  // finite, from the first row
    rule.selectionBias = bias.data();
  }
  if (ruleBits & 8) {
    for (int d = std::min(experts, 8); d > 1; --d) {
      if (experts % d == 0) {
        rule.groups = d;
        rule.keptGroups = 1 + (experts + tokens) % d;
        rule.groupScore = (ruleBits & 16) ? GroupScore::Max : GroupScore::Top2Sum;
        break;
      }
    }
  }
  rule.normalize = (ruleBits & 16) != 0;
  rule.scale = (ruleBits & 32) ? 2.5f : 1.0f;
  try {
    validateRouterRule(rule, policy, experts);
  } catch (const Error&) {
    return;  // route() refuses it with ERR_DYNAMOE_POLICY
  }
  const int kMax = policy.kMax(experts);
  RoutingArrays r(tokens, experts, kMax);
  cpu::routeTokens(scores.data(), stride, tokens, experts, RouterInput::Logits, policy, rule, r.output);
  const int groupSize = rule.groups > 1 ? experts / rule.groups : experts;
  const double factor = static_cast<double>(rule.scale) * (policy.kind == PolicyKind::TopK ? policy.scale : 1.0f);
  std::vector<int> load(experts, 0);
  for (int t = 0; t < tokens; ++t) {
    const int count = r.counts[t];
    FUZZ_CHECK(count >= 1 && count <= kMax);
    std::vector<char> seen(experts, 0), groupsUsed(experts / groupSize, 0);
    double sum = 0.0;
    for (int j = 0; j < kMax; ++j) {
      const size_t slot = static_cast<size_t>(t) * kMax + j;
      if (j >= count) {
        FUZZ_CHECK(r.ids[slot] == -1 && r.weights[slot] == 0.0f);
        continue;
      }
      const int id = r.ids[slot];
      FUZZ_CHECK(id >= 0 && id < experts && !seen[id]);
      seen[id] = 1;
      groupsUsed[id / groupSize] = 1;
      ++load[id];
      // Scores are at most 1 (a softmax-of-kept weight too): only a factor past the float range overflows.
      FUZZ_CHECK(!std::isnan(r.weights[slot]) && r.weights[slot] >= 0.0f);
      if (factor <= std::numeric_limits<float>::max()) FUZZ_CHECK(std::isfinite(r.weights[slot]));
      sum += r.weights[slot];
    }
    if (rule.groups > 1) FUZZ_CHECK(std::count(groupsUsed.begin(), groupsUsed.end(), 1) <= rule.keptGroups);
    const bool normalised = rule.scoring == RouterScoring::SoftmaxOfKept || rule.normalize || policy.normalize;
    // Normalised weights sum to the factor, to float rounding while the weights are normal floats.
    if (normalised && sum > 0.0 && factor >= 1e-30 && factor <= 1e30) FUZZ_CHECK(std::fabs(sum - factor) <= 1e-5 * factor);
  }
  for (int e = 0; e < experts; ++e) FUZZ_CHECK(r.expertLoad[e] == load[e]);
  RoutingArrays single(1, experts, kMax);
  for (int t = 0; t < tokens; t += std::max(1, tokens / 4)) {
    cpu::routeTokens(scores.data() + static_cast<size_t>(t) * stride, stride, 1, experts, RouterInput::Logits, policy,
                     rule, single.output);
    FUZZ_CHECK(single.counts[0] == r.counts[t]);
    const size_t first = static_cast<size_t>(t) * kMax;
    FUZZ_CHECK(std::equal(single.ids.begin(), single.ids.end(), r.ids.begin() + first));
    FUZZ_CHECK(std::memcmp(single.weights.data(), r.weights.data() + first, kMax * sizeof(float)) == 0);
  }

  // Zero-computation experts: the last quarter of the ids get no plan row; identity adds weight * x.
  const int ffnExperts = experts - experts / 4;
  const cpu::ExpertPlan plan = cpu::planExpertRows(r.output, tokens, ffnExperts, 0);
  constexpr int kHidden = 2;
  std::vector<float> rowOutput(static_cast<size_t>(plan.rows) * kHidden, 1.0f);
  std::vector<float> x(static_cast<size_t>(tokens) * kHidden);
  for (int t = 0; t < tokens; ++t) x[static_cast<size_t>(t) * kHidden] = 1.0f;  // column 1 of x stays 0
  std::vector<float> out(static_cast<size_t>(tokens) * kHidden, -1.0f);
  cpu::combineExpertRows(plan, r.output, tokens, kHidden, 0, rowOutput.data(), kHidden,
                         cpu::ZeroExpertRows{ffnExperts, true, x.data(), kHidden}, out.data(), kHidden);
  int routedRows = 0;
  for (int t = 0; t < tokens; ++t) {
    int ffnSlots = 0;
    double expected = 0.0;
    bool infiniteIdentity = false;  // an infinite weight (a scale past the float range) times x's 0 is NaN
    for (int j = 0; j < r.counts[t]; ++j) {
      const size_t slot = static_cast<size_t>(t) * kMax + j;
      const bool zero = r.ids[slot] >= ffnExperts;
      FUZZ_CHECK(zero == (plan.arrays.slotRow[slot] < 0));
      ffnSlots += zero ? 0 : 1;
      expected += zero ? r.weights[slot] : 1.0;
      infiniteIdentity = infiniteIdentity || (zero && std::isinf(r.weights[slot]));
    }
    routedRows += ffnSlots;
    const float untouched = out[static_cast<size_t>(t) * kHidden + 1];
    FUZZ_CHECK(infiniteIdentity ? std::isnan(untouched) : untouched == static_cast<float>(ffnSlots));
    // Finite weights may still sum past the float range (a huge scale): the combine's float sum is then infinite.
    const float combined = out[static_cast<size_t>(t) * kHidden];
    const bool overflows = expected > (1.0 - 1e-5) * std::numeric_limits<float>::max();
    FUZZ_CHECK((overflows && std::isinf(combined)) || std::fabs(combined - expected) <= 1e-5 * (1.0 + expected));
  }
  FUZZ_CHECK(plan.routedRows == routedRows);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ByteReader in(data, size);
  int tokens = 1 + in.u8() % kMaxTokens;
  const int experts = 1 + in.u16() % kMaxExperts;
  tokens = std::max(1, std::min<int>(tokens, static_cast<int>(kMaxScores / experts)));
  const uint8_t flags = in.u8();
  const RouterInput input = (flags & 1) ? RouterInput::Probabilities : RouterInput::Logits;
  const int kind = (flags >> 1) & 3;
  const uint8_t encodingByte = in.u8();
  const int encoding = encodingByte % 4;
  const int ruleBits = encodingByte >> 2;  // a family router rule on the same logits (0: none)

  // What readPolicy (native/js_args.cpp) can hand on: any kind, integer parameters, floats for p / tau / scale,
  // then validatePolicy decides; the same gate is applied here.
  RoutingPolicy policy;
  policy.kind = kind == 1 ? PolicyKind::TopP : kind == 2 ? PolicyKind::Threshold : PolicyKind::TopK;
  policy.k = in.i16();
  const int minExperts = in.i16();
  const int maxExperts = in.i16();
  const float p = in.f32();
  const float tau = in.f32();
  const float scale = in.f32();
  // readPolicy sets each field only for the kinds that have it; the others keep their defaults.
  if (policy.kind == PolicyKind::TopK) policy.scale = scale;
  if (policy.kind == PolicyKind::TopP) policy.p = p;
  if (policy.kind == PolicyKind::Threshold) policy.tau = tau;
  if (policy.kind != PolicyKind::TopK) {
    policy.minExperts = minExperts;
    policy.maxExperts = maxExperts;
  }
  policy.normalize = (flags & 8) != 0;
  try {
    validatePolicy(policy, experts);
  } catch (const Error&) {
    return 0;  // route() would reject this policy with ERR_DYNAMOE_POLICY
  }

  const size_t stride = static_cast<size_t>(experts) + ((flags >> 5) & 3);
  // Exactly (tokens - 1) * stride + experts floats: ASan sees any read past the last row's last expert.
  std::vector<float> scores(static_cast<size_t>(tokens - 1) * stride + experts);
  for (int t = 0; t < tokens; ++t) {
    for (size_t c = 0; c < stride && static_cast<size_t>(t) * stride + c < scores.size(); ++c) {
      const bool padding = c >= static_cast<size_t>(experts);
      scores[static_cast<size_t>(t) * stride + c] =
          padding ? std::numeric_limits<float>::quiet_NaN()  // never read: it would poison the row
                  : decodeScore(encoding, in.rest(), in.restSize(), static_cast<size_t>(t) * experts + c);
    }
  }
  if (!routeAcceptsScores(scores, tokens, experts, stride, input)) return 0;  // ERR_DYNAMOE_VALUE in route()

  const int kMax = policy.kMax(experts);
  RoutingArrays routed(tokens, experts, kMax);
  cpu::routeTokens(scores.data(), stride, tokens, experts, input, policy, RouterRule{}, routed.output);
  checkRouting(routed, tokens, experts, policy, input);
  checkRowsIndependent(scores, stride, tokens, experts, input, policy, routed);
  checkPlanAndCombine(routed, tokens, experts, (flags & 0x80) ? 1 : 0);

  if (input == RouterInput::Logits) {
    std::vector<float> contiguous(static_cast<size_t>(tokens) * experts);  // routerLosses takes unpadded rows
    for (int t = 0; t < tokens; ++t) {
      std::copy_n(scores.data() + static_cast<size_t>(t) * stride, experts,
                  contiguous.data() + static_cast<size_t>(t) * experts);
    }
    checkRouterLosses(contiguous, tokens, experts, policy, routed, (flags & 0x10) != 0);
    if (ruleBits != 0) checkRouterRule(scores, stride, tokens, experts, policy, ruleBits);
  }
  return 0;
}

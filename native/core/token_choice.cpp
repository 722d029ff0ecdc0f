// The CPU's token choice (token_choice.h states it exactly). Top-p alone ranks only a growing head of the ids, since
// its total is taken in id order: a likely head is a few hundred ids, not the whole vocabulary.
#include "token_choice.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace dynamoe {

namespace {

int32_t firstArgmax(const float* values, int count) {
  int32_t best = 0;
  for (int i = 1; i < count; ++i) {
    if (values[i] > values[best]) best = i;
  }
  return best;
}

// A float's bits as an unsigned integer in the float's order (keys are never NaN).
uint32_t orderedBits(float key) {
  uint32_t bits;
  std::memcpy(&bits, &key, 4);
  return bits & 0x80000000u ? ~bits : bits | 0x80000000u;
}

// base[0..chunks] of a candidate sequence's first `count` positions (whole chunks, and a last partial one only
// when `count` ends the sequence).
template <typename WeightAt>
std::vector<double> chunkBases(const WeightAt& weightAt, int count) {
  std::vector<double> base{0.0};
  for (int first = 0; first < count; first += kChoiceChunk) {
    base.push_back(base.back() + choiceChunkSum(weightAt, first, std::min(first + kChoiceChunk, count)));
  }
  return base;
}

int32_t sample(const float* logits, const TokenChoice& choice) {
  const int limit = choice.limit;
  std::vector<float> keys(limit);
  float maxKey = choiceKey(logits[0]);
  for (int v = 0; v < limit; ++v) {
    keys[v] = choiceKey(logits[v]);
    maxKey = std::max(maxKey, keys[v]);
  }
  const auto weightOfId = [&](int id) { return choiceWeight(keys[id], maxKey, choice.temperature); };
  const int n = choiceCandidates(choice);
  if (!choiceRanked(choice)) {
    const std::vector<double> base = chunkBases(weightOfId, n);
    const int q = choiceFirstAbove(weightOfId, base.data(), n, choice.uniform * base.back());
    return q < 0 ? n - 1 : q;
  }

  const bool topKRestricts = n < limit;
  // Top-k's total is over its candidates; top-p's alone over every id, in id order.
  const double idOrderTotal = topKRestricts ? 0.0 : chunkBases(weightOfId, limit).back();
  // Each id as one integer that sorts in rank order (ranksBefore): its key's order, descending, then its id.
  std::vector<uint64_t> order(limit);
  for (int v = 0; v < limit; ++v) order[v] = (uint64_t{~orderedBits(keys[v])} << 32) | static_cast<uint32_t>(v);
  const auto idAtRank = [&](int q) { return static_cast<int32_t>(order[q] & 0xffffffffu); };
  const auto weightAtRank = [&](int q) { return weightOfId(idAtRank(q)); };
  // The ranked head: all n candidates for top-k, else whole chunks, four times more each time top-p is not reached.
  for (int head = topKRestricts ? n : std::min(n, 4 * kChoiceChunk);; head = std::min(n, head * 4)) {
    std::partial_sort(order.begin(), order.begin() + head, order.end());
    const std::vector<double> base = chunkBases(weightAtRank, head);
    const double total = topKRestricts ? base.back() : idOrderTotal;
    int kept = n;
    if (choice.topP < 1.0) {
      const int crossing = choiceFirstAbove(weightAtRank, base.data(), head, choice.topP * total);
      if (crossing < 0 && head < n) continue;
      if (crossing >= 0) kept = crossing + 1;
    }
    const double keptTotal = choiceRunningAt(weightAtRank, base.data(), kept - 1);
    const int q = choiceFirstAbove(weightAtRank, base.data(), kept, choice.uniform * keptTotal);
    return idAtRank(q < 0 ? kept - 1 : q);
  }
}

}  // namespace

int32_t chooseToken(const float* logits, const TokenChoice& choice) {
  if (choice.temperature == 0.0) return firstArgmax(logits, choice.limit);
  return sample(logits, choice);
}

}  // namespace dynamoe

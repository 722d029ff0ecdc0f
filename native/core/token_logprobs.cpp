#include "token_logprobs.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace dynamoe {

namespace {

double keyOf(float logit) { return std::isnan(logit) ? -std::numeric_limits<double>::infinity() : logit; }

}  // namespace

TokenLogprobs tokenLogprobs(const float* logits, int limit, int32_t chosen, int top) {
  TokenLogprobs out;
  double maxKey = -std::numeric_limits<double>::infinity();
  for (int i = 0; i < limit; ++i) maxKey = std::max(maxKey, keyOf(logits[i]));
  // log(sum exp(l - max)) + max: the log of the softmax's denominator; -inf rows stay -inf.
  double logTotal = maxKey;
  if (std::isfinite(maxKey)) {
    double sum = 0.0;
    for (int i = 0; i < limit; ++i) sum += std::exp(keyOf(logits[i]) - maxKey);
    logTotal = maxKey + std::log(sum);
  }
  const auto logprob = [&](int32_t id) {
    const double key = keyOf(logits[id]);
    return std::isfinite(logTotal) ? key - logTotal : -std::numeric_limits<double>::infinity();
  };
  out.chosen = logprob(chosen);
  // The `top` best ids, kept sorted (higher logit first, then lower id) by insertion: top is small.
  out.count = std::min(top, limit);
  int filled = 0;
  const auto before = [&](int32_t a, int32_t b) {
    const double ka = keyOf(logits[a]);
    const double kb = keyOf(logits[b]);
    return ka > kb || (ka == kb && a < b);
  };
  for (int32_t id = 0; id < limit && out.count > 0; ++id) {
    if (filled == out.count && !before(id, out.topIds[filled - 1])) continue;
    int at = filled < out.count ? filled++ : filled - 1;
    while (at > 0 && before(id, out.topIds[at - 1])) {
      out.topIds[at] = out.topIds[at - 1];
      --at;
    }
    out.topIds[at] = id;
  }
  for (int i = 0; i < out.count; ++i) out.topLogprobs[i] = logprob(out.topIds[i]);
  return out;
}

}  // namespace dynamoe

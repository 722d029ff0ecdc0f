#include "graph.h"

namespace dynamoe {

namespace {
constexpr const char* kOpNames[] = {"embedding", "logits", "linear", "rms_norm", "rope",
                                    "attention", "add",    "mlp",    "moe",      "mla_attention"};
constexpr int kOpCount = static_cast<int>(sizeof(kOpNames) / sizeof(kOpNames[0]));
static_assert(kOpCount == std::variant_size_v<GraphNode>, "one name per op kind");
}  // namespace

const char* opName(OpKind kind) { return kOpNames[static_cast<int>(kind)]; }

bool parseOpKind(const std::string& name, OpKind* out) {
  for (int i = 0; i < kOpCount; ++i) {
    if (name == kOpNames[i]) {
      *out = static_cast<OpKind>(i);
      return true;
    }
  }
  return false;
}

}  // namespace dynamoe

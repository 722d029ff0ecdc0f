// The backend interface: what a backend (CPU, CUDA) implements to hold weights and run routing, a MoE layer and a
// whole model step. The addon picks a backend by device name and knows nothing else of it; backends know nothing of
// the addon or of each other.
#pragma once

#include <cstddef>
#include <memory>

#include "graph.h"
#include "model_step.h"
#include "moe_config.h"
#include "routing_output.h"
#include "routing_policy.h"
#include "workspace.h"

namespace dynamoe {

// Rows [first, first + rows) of a MoE forward, routed by `policy`, their router statistics added to `stats` (if not
// null) and their expert loads written to `expertLoad` ([experts], if not null).
struct MoeRowRange {
  int first = 0;
  int rows = 0;
  const RoutingPolicy* policy = nullptr;
  const RouterStatsSums* stats = nullptr;
  int32_t* expertLoad = nullptr;
};

// One MoE forward: x [tokens][hidden] (row stride xStride) -> out [tokens][hidden] (row stride outStride), all in
// host memory, with the routing result and the optional counters and statistics.
struct MoeForward {
  const float* x = nullptr;
  size_t xStride = 0;
  int tokens = 0;
  const RoutingPolicy* policy = nullptr;
  // Row ranges routed by policies of their own (a step of many sequences); null: every row by `policy`, with `stats`.
  const MoeRowRange* ranges = nullptr;
  int rangeCount = 0;
  float* out = nullptr;
  size_t outStride = 0;
  RoutingOutput routing;
  WorkCounters work;
  const RouterStatsSums* stats = nullptr;
  Workspace* workspace = nullptr;  // a sequence's scratch, or null for the backend's own
};

// A MoE layer whose weights a backend holds. Thread-safe: forwards may run at once (with different workspaces).
class MoeLayer {
 public:
  virtual ~MoeLayer() = default;
  virtual const MoeLayerConfig& config() const = 0;
  virtual size_t weightBytes() const = 0;
  virtual const char* device() const = 0;  // the backend's name
  virtual void forward(const MoeForward& call) const = 0;
  // Times `runs` forwards stage by stage (after one warm-up run); backends that cannot time stages throw.
  virtual StageTimes profile(const float* x, int tokens, const RoutingPolicy& policy, int runs) const;
};

// A whole model on a backend (its graph executor): built node by node, then run one step at a time.
class Model {
 public:
  virtual ~Model() = default;
  virtual const GraphLayout& layout() const = 0;
  // Packs or uploads the node's weights (read only during the call). Never concurrent with forward.
  virtual void addNode(const GraphNode& node) = 0;
  virtual size_t weightBytes() const = 0;
  // A sequence of up to `capacity` tokens; it takes KV blocks from the model's pool as it grows.
  virtual std::shared_ptr<Sequence> createSequence(int capacity) = 0;
  virtual KvPoolState kvPool() const = 0;
  // Runs every op in order over all segments' rows; each sequence keeps the step's positions only when all of them
  // succeed. Throws ERR_DYNAMOE_OUT_OF_MEMORY, before any op runs, when the pool lacks the blocks the step needs.
  virtual void forward(const StepRequest& request) const = 0;
  // Frees what the model pools for its sequences (on dispose; sequences alive keep what they hold).
  virtual void close() = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  // Throws Error(ERR_DYNAMOE_DEVICE) saying why when this backend cannot run here.
  virtual void requireUsable() const = 0;
  virtual std::shared_ptr<const MoeLayer> createMoeLayer(const MoeWeights& weights) const = 0;
  // Routes `tokens` rows of `experts` finite scores (row stride `stride`) into `out` by `rule` (its selection bias,
  // when set, in host memory) and `policy`.
  virtual void route(const float* scores, size_t stride, int tokens, int experts, RouterInput input,
                     const RoutingPolicy& policy, const RouterRule& rule, const RoutingOutput& out) const = 0;
  // out [m][n] = input [m][k] (f32) x weights^T, weights n rows of k `type` values (GGUF blocks), multiplied the way
  // this backend multiplies a model's quantized matrices: one dense GEMM, host memory in and out (tests and tools).
  virtual void quantMatmul(QuantType type, const uint8_t* weights, int n, int k, const float* input, int m,
                           float* out) const = 0;
  // tokens[r] = the choice (token_choice.h) of row r of `logits` ([rows][vocab], host memory), made by the kernels
  // this backend's models choose with (tests and tools).
  virtual void chooseTokens(const float* logits, int rows, int vocab, const TokenChoice* choices,
                            int32_t* tokens) const = 0;
  // A model whose KV pool holds `kvPoolTokens` positions of every attention layer (rounded up to whole blocks).
  virtual std::unique_ptr<Model> createModel(const GraphLayout& layout, DType dtype, int kvPoolTokens) const = 0;
};

}  // namespace dynamoe

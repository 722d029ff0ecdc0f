// Reads one model-graph node description from JS into a builder that packs its weights on a worker thread.
#pragma once

#include <napi.h>

#include <functional>
#include <memory>
#include <vector>

#include "cpu/graph_ops.h"
#include "cpu/model_graph.h"

namespace dynamoe {

// State shared by the builders of one graph: a tied LM head reuses the embedding's packed table.
struct GraphBuildState {
  std::shared_ptr<const cpu::PackedMatrix> embeddingTable;
};

struct GraphNodeBuilder {
  std::function<std::unique_ptr<cpu::GraphOp>(GraphBuildState&)> build;  // runs on a worker thread
  std::vector<Napi::ObjectReference> arrays;  // the typed arrays `build` reads, alive until it ran
};

// Checks `node` against the graph layout; throws a coded JS error on bad input.
GraphNodeBuilder readGraphNode(const Napi::Value& node, const cpu::GraphLayout& layout, DType dtype);

}  // namespace dynamoe

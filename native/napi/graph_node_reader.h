// Reads one model-graph node from JS into the core's typed node, checked against the graph layout.
#pragma once

#include <napi.h>

#include <vector>

#include "../core/graph.h"

namespace dynamoe {

struct ReadNode {
  GraphNode node;
  std::vector<Napi::ObjectReference> arrays;  // the typed arrays the node's weights point into, alive until built
};

// Checks `node` against the graph layout; throws a coded JS error on bad input.
ReadNode readGraphNode(const Napi::Value& node, const GraphLayout& layout, DType dtype);

}  // namespace dynamoe

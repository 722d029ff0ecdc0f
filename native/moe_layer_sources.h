// Reads MoELayer options (shape, dtype, weight typed arrays) into the sources the CPU layer packs from.
#pragma once

#include <napi.h>

#include <vector>

#include "cpu/moe_layer.h"

namespace dynamoe {

struct MoeLayerSources {
  cpu::MoeLayerConfig config;
  const float* router = nullptr;
  std::vector<cpu::ExpertSources> experts;
  bool hasShared = false;
  cpu::SharedExpertSources shared;
  // Every typed array read, held so a packing worker thread can read them after this call returns.
  std::vector<Napi::ObjectReference> arrays;

  std::shared_ptr<const cpu::MoeLayer> pack() const {
    return std::make_shared<const cpu::MoeLayer>(config, router, experts, hasShared ? &shared : nullptr);
  }
};

// Checks and reads `options`; throws a coded JS error on bad input.
MoeLayerSources readMoeLayerSources(const Napi::Value& options);

}  // namespace dynamoe

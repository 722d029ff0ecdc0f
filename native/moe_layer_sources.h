// Reads MoELayer options (shape, dtype, weight typed arrays, device) into the sources a layer packs from.
#pragma once

#include <napi.h>

#include <string>
#include <vector>

#include "cpu/moe_layer.h"
#include "moe_block.h"

namespace dynamoe {

struct MoeLayerSources {
  cpu::MoeLayerConfig config;
  const float* router = nullptr;
  std::vector<cpu::ExpertSources> experts;
  bool hasShared = false;
  cpu::SharedExpertSources shared;
  // Every typed array read, held so a packing worker thread can read them after this call returns.
  std::vector<Napi::ObjectReference> arrays;

  std::string device = "cpu";  // "cpu" or "cuda": where the JS MoELayer's weights live

  // The CPU layer (model graphs run on the CPU).
  std::shared_ptr<const cpu::MoeLayer> pack() const {
    return std::make_shared<const cpu::MoeLayer>(config, router, experts, hasShared ? &shared : nullptr);
  }
  // The layer on `device`, for the JS MoELayer class.
  std::shared_ptr<const MoeBlock> packBlock() const;
};

// Checks and reads `options`; throws a coded JS error on bad input.
MoeLayerSources readMoeLayerSources(const Napi::Value& options);

}  // namespace dynamoe

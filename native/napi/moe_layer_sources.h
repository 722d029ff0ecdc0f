// Reads MoELayer options (shape, dtype, weight typed arrays, device) into the core's MoeWeights.
#pragma once

#include <napi.h>

#include <string>
#include <vector>

#include "../core/backend.h"

namespace dynamoe {

struct MoeLayerSources {
  MoeWeights weights;
  // Every typed array read, held so a packing worker thread can read them after this call returns.
  std::vector<Napi::ObjectReference> arrays;
  const Backend* backend = nullptr;  // where the JS MoELayer's weights live (options.device, default 'cpu')
};

// Checks and reads `options`; throws a coded JS error on bad input (and ERR_DYNAMOE_DEVICE, before reading the
// weights, when the device cannot run here).
MoeLayerSources readMoeLayerSources(const Napi::Value& options);

// Reads the optional routerBias, gateBias/upBias/downBias and activation into `sources` (moe_bias_sources.cpp).
void readMoeBiasesAndActivation(const Napi::Object& options, MoeLayerSources& sources);

}  // namespace dynamoe

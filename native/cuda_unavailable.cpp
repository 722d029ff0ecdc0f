// The CUDA backend of the CPU-only build (binding.gyp): reports that this binary has no CUDA kernels.
#include "../cuda/cuda_backend.h"

namespace dynamoe::cuda {

namespace {
const char* const kNotBuilt =
    "this dynamoe binary was built without CUDA; use the CUDA binary (DYNAMOE_DEVICE=cuda or auto picks it on a "
    "machine with a usable GPU; `npm run build:cuda` builds it from source)";
}

const BackendStatus& backendStatus() {
  static const BackendStatus status = [] {
    BackendStatus s;
    s.error = "notBuilt";
    s.errorMessage = kNotBuilt;
    return s;
  }();
  return status;
}

void requireDevice() {
  throw Error(code::kDevice, std::string("device 'cuda' is not available: notBuilt (") + kNotBuilt + ")");
}

std::shared_ptr<const MoeBlock> uploadMoeLayer(const cpu::MoeLayerConfig&, const float*,
                                               const std::vector<cpu::ExpertSources>&,
                                               const cpu::SharedExpertSources*) {
  requireDevice();
  return nullptr;
}

void routeOnDevice(const float*, int, int, cpu::RouterInput, const RoutingPolicy&, const cpu::RoutingOutput&) {
  requireDevice();
}

}  // namespace dynamoe::cuda

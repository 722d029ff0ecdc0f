// The CUDA backend of the CPU-only build (binding.gyp): a backend that reports this binary has no CUDA kernels.
#include <string>

#include "cuda_backend.h"

namespace dynamoe::cuda {

namespace {

const char* const kNotBuilt =
    "this dynamoe binary was built without CUDA; use the CUDA binary (DYNAMOE_DEVICE=cuda or auto picks it on a "
    "machine with a usable GPU; `npm run build:cuda` builds it from source)";

[[noreturn]] void notBuilt() {
  throw Error(code::kDevice, std::string("device 'cuda' is not available: notBuilt (") + kNotBuilt + ")");
}

class UnavailableBackend final : public Backend {
 public:
  const char* name() const override { return "cuda"; }
  void requireUsable() const override { notBuilt(); }
  std::shared_ptr<const MoeLayer> createMoeLayer(const MoeWeights&) const override { notBuilt(); }
  void route(const float*, size_t, int, int, RouterInput, const RoutingPolicy&, const RouterRule&,
             const RoutingOutput&) const override {
    notBuilt();
  }
  void quantMatmul(QuantType, const uint8_t*, int, int, const float*, int, float*) const override { notBuilt(); }
  void chooseTokens(const float*, int, int, const TokenChoice*, int32_t*) const override { notBuilt(); }
  std::unique_ptr<Model> createModel(const GraphLayout&, DType, int) const override { notBuilt(); }
};

}  // namespace

const BackendStatus& backendStatus() {
  static const BackendStatus status = [] {
    BackendStatus s;
    s.error = "notBuilt";
    s.errorMessage = kNotBuilt;
    return s;
  }();
  return status;
}

bool deviceMemoryNow(size_t*, size_t*) { return false; }

const Backend& cudaBackend() {
  static const UnavailableBackend backend;
  return backend;
}

}  // namespace dynamoe::cuda

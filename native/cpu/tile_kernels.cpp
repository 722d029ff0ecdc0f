#include "tile_kernels.h"

#include <atomic>

#include "../core/errors.h"

namespace dynamoe::cpu {

namespace {
const TileKernels& kernelsFor(Isa isa) {
#if defined(DYNAMOE_X86_KERNELS)
  if (isa == Isa::Avx512Bf16) return avx512Bf16TileKernels();
  if (isa == Isa::Avx512) return avx512TileKernels();
  if (isa == Isa::Avx2) return avx2TileKernels();
#endif
  (void)isa;
  return scalarTileKernels();
}

std::atomic<const TileKernels*>& active() {
  static std::atomic<const TileKernels*> kernels{&kernelsFor(bestIsa())};
  return kernels;
}
}  // namespace

const TileKernels& activeTileKernels() { return *active().load(std::memory_order_acquire); }

void setActiveIsa(Isa isa) {
  if (!isaSupported(isa)) {
    throw Error(code::kType, std::string("this CPU (or build) cannot run the '") + isaName(isa) + "' kernels");
  }
  active().store(&kernelsFor(isa), std::memory_order_release);
}

}  // namespace dynamoe::cpu

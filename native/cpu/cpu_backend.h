// The CPU backend: the core's backend interface on the CPU kernels and thread pool.
#pragma once

#include "../core/backend.h"

namespace dynamoe::cpu {

const Backend& cpuBackend();

}  // namespace dynamoe::cpu

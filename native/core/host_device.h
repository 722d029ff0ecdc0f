// Marks functions that CUDA device code calls too; plain inline functions in host-only builds.
#pragma once

#ifdef __CUDACC__
#define DYNAMOE_HOST_DEVICE __host__ __device__
#else
#define DYNAMOE_HOST_DEVICE
#endif

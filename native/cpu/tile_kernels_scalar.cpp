// Portable tile kernels: plain loops the compiler may auto-vectorise for the baseline target.
#include <cmath>

#include "tile_family.h"

namespace dynamoe::cpu {

namespace {

constexpr int kMaxRows = 4;

template <DType W, int MR>
struct Tile {
  static void run(const TileJob& job);
};

template <DType W, int MR>
void Tile<W, MR>::run(const TileJob& job) {
  float acc[MR][kPanelWidth];
  for (int r = 0; r < MR; ++r) {
    for (int j = 0; j < kPanelWidth; ++j) acc[r][j] = job.first ? 0.0f : job.partial[r * kPanelWidth + j];
  }
  float w[kPanelWidth];
  for (int kk = 0; kk < job.k; ++kk) {
    for (int j = 0; j < kPanelWidth; ++j) {
      w[j] = loadAsF32(job.panel, panelElementIndex(W, static_cast<size_t>(kk), j), W);
    }
    for (int r = 0; r < MR; ++r) {
      const float a = static_cast<const float*>(job.rows[r])[kk];
      for (int j = 0; j < kPanelWidth; ++j) acc[r][j] += a * w[j];
    }
  }
  if (!job.last) {
    for (int r = 0; r < MR; ++r) {
      for (int j = 0; j < kPanelWidth; ++j) job.partial[r * kPanelWidth + j] = acc[r][j];
    }
    return;
  }
  for (int r = 0; r < MR; ++r) {
    if (job.epilogue == Epilogue::SwiGlu) {
      for (int j = 0; j < kSwiGluColumns; ++j) {
        const float gate = acc[r][j];
        job.out[r][j] = gate / (1.0f + std::exp(-gate)) * acc[r][kSwiGluColumns + j];
      }
    } else {
      for (int j = 0; j < kPanelWidth; ++j) job.out[r][j] = acc[r][j] * job.rowScale[r];
    }
  }
}

template <DType W>
struct Widen {
  static void run(const void* panel, int k, float* out) {
    for (size_t kk = 0; kk < static_cast<size_t>(k); ++kk) {
      for (int j = 0; j < kPanelWidth; ++j) {
        out[kk * kPanelWidth + j] = loadAsF32(panel, panelElementIndex(W, kk, j), W);
      }
    }
  }
};

// Quantized dot products: each row's products in 8 interleaved partial sums (k mod 8), added in one fixed order.
void quantDotScalar(const QuantJob& job) {
  const QuantTraits traits = quantTraits(job.type);
  float block[256];
  float partial[kQuantRows][8] = {};
  const uint8_t* weights = job.weights;
  for (int c = 0; c < job.k; c += traits.blockElements, weights += traits.blockBytes) {
    dequantizeBlock(job.type, weights, block);
    for (int r = 0; r < job.rowCount; ++r) {
      for (int i = 0; i < traits.blockElements; ++i) partial[r][i % 8] += block[i] * job.rows[r][c + i];
    }
  }
  for (int r = 0; r < job.rowCount; ++r) {
    const float* p = partial[r];
    job.out[r] = ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
  }
}

void swiGluScalar(const float* gate, const float* up, int n, float* out) {
  for (int i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace

const TileKernels& scalarTileKernels() {
  static const TileKernels kernels =
      tileFamily<Tile, Widen, kMaxRows>(Isa::Scalar, attendScalar, quantDotScalar, swiGluScalar);
  return kernels;
}

}  // namespace dynamoe::cpu

// Weights repacked at load time into the panel layout the tile kernels read (see tile_kernels.h).
#pragma once

#include <cstddef>

#include "../core/aligned_buffer.h"
#include "../core/dtype.h"
#include "../core/moe_config.h"
#include "tile_kernels.h"

namespace dynamoe::cpu {

// Float panels as above, or quantized: each panel the 32 weight rows of its output columns, each row K values of
// GGUF blocks exactly as in the file (so weights stay at the file's bits per weight).
class PackedMatrix {
 public:
  PackedMatrix() = default;
  PackedMatrix(int panels, int k, DType dtype)
      : data_(static_cast<size_t>(panels) * storedK(dtype, k) * kPanelWidth * dtypeBytes(dtype)), panels_(panels),
        k_(k), dtype_(dtype) {}
  PackedMatrix(int panels, int k, QuantType quant)
      : data_(static_cast<size_t>(panels) * kPanelWidth * quantRowBytes(quant, k)), panels_(panels), k_(k),
        quant_(quant) {}

  int panels() const { return panels_; }
  int k() const { return k_; }
  DType dtype() const { return dtype_; }  // of float panels
  QuantType quant() const { return quant_; }
  bool quantized() const { return quant_ != QuantType::None; }
  size_t bytes() const { return data_.bytes(); }
  size_t rowBytes() const { return quantRowBytes(quant_, k_); }  // of quantized panels
  size_t panelBytes() const {
    return quantized() ? kPanelWidth * rowBytes() : static_cast<size_t>(storedK(dtype_, k_)) * kPanelWidth * dtypeBytes(dtype_);
  }
  size_t panelElements() const { return static_cast<size_t>(storedK(dtype_, k_)) * kPanelWidth; }
  const void* panel(int p) const { return data_.as<char>() + p * panelBytes(); }
  void* panel(int p) { return data_.as<char>() + p * panelBytes(); }

 private:
  AlignedBuffer data_;
  int panels_ = 0;
  int k_ = 0;
  DType dtype_ = DType::F32;
  QuantType quant_ = QuantType::None;
};

// [n][k] -> ceil(n / 32) panels of [k][32] (bf16: in k pairs, see tile_kernels.h); output column j of panel p is
// source row p*32 + j (zero past n). A quantized source gives quantized panels: its rows as they are, 32 a panel.
PackedMatrix packColumns(MatrixSource source, int n, int k, DType target);
// gate and up [ffn][hidden] -> ceil(ffn / 16) panels of [hidden][16 gate | 16 up] for the fused SwiGLU epilogue.
// Quantized gate and up (of one type) give quantized panels of 16 gate rows then 16 up rows.
PackedMatrix packGateUp(MatrixSource gate, MatrixSource up, int ffn, int hidden, DType target);

}  // namespace dynamoe::cpu

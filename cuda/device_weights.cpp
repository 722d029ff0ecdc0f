#include "device_weights.h"

#include <algorithm>
#include <functional>

namespace dynamoe::cuda {

namespace {

constexpr size_t kStagingBytes = 8 << 20;

void storeAs(DType dtype, void* row, int index, float value) {
  switch (dtype) {
    case DType::F32: static_cast<float*>(row)[index] = value; return;
    case DType::F16: static_cast<uint16_t*>(row)[index] = f32ToF16(value); return;
    case DType::BF16: static_cast<uint16_t*>(row)[index] = f32ToBf16(value); return;
  }
}

// Where packed row r of a matrix comes from: a source matrix and its row, or nothing (a zero padding row).
struct RowOrigin {
  const MatrixSource* source;
  int row;
};

// Fills `rows` packed rows of `paddedK` elements each, staged `kStagingBytes` at a time, at device `destination`.
void uploadRows(char* destination, int rows, int k, int paddedK, DType dtype,
                const std::function<RowOrigin(int)>& origin, const char* what) {
  const size_t rowBytes = static_cast<size_t>(paddedK) * dtypeBytes(dtype);
  const int rowsPerSlice = static_cast<int>(std::max<size_t>(1, kStagingBytes / rowBytes));
  std::vector<char> staging(static_cast<size_t>(std::min(rows, rowsPerSlice)) * rowBytes);
  for (int first = 0; first < rows; first += rowsPerSlice) {
    const int count = std::min(rowsPerSlice, rows - first);
    std::fill(staging.begin(), staging.end(), 0);  // zero bits are 0.0 in every dtype
    for (int r = 0; r < count; ++r) {
      const RowOrigin from = origin(first + r);
      if (from.source == nullptr) continue;
      char* row = staging.data() + static_cast<size_t>(r) * rowBytes;
      const size_t base = static_cast<size_t>(from.row) * k;
      for (int i = 0; i < k; ++i) storeAs(dtype, row, i, loadAsF32(from.source->data, base + i, from.source->dtype));
    }
    checkCuda(cudaMemcpy(destination + static_cast<size_t>(first) * rowBytes, staging.data(), count * rowBytes,
                         cudaMemcpyHostToDevice),
              what);
  }
}

}  // namespace

DeviceBuffer uploadMatrices(const std::vector<MatrixSource>& sources, int rows, int paddedRows, int k,
                            int paddedK, DType dtype, const char* what) {
  const size_t matrixBytes = static_cast<size_t>(paddedRows) * paddedK * dtypeBytes(dtype);
  DeviceBuffer buffer(matrixBytes * sources.size(), what);
  for (size_t e = 0; e < sources.size(); ++e) {
    const MatrixSource* source = &sources[e];
    uploadRows(buffer.as<char>() + e * matrixBytes, paddedRows, k, paddedK, dtype,
               [&](int r) { return RowOrigin{r < rows ? source : nullptr, r}; }, what);
  }
  return buffer;
}

DeviceBuffer uploadGateUp(const std::vector<MatrixSource>& gate, const std::vector<MatrixSource>& up,
                          int ffn, int paddedFfn, int hidden, int paddedHidden, DType dtype, const char* what) {
  const int packedRows = 2 * paddedFfn;
  const size_t matrixBytes = static_cast<size_t>(packedRows) * paddedHidden * dtypeBytes(dtype);
  DeviceBuffer buffer(matrixBytes * gate.size(), what);
  for (size_t e = 0; e < gate.size(); ++e) {
    uploadRows(buffer.as<char>() + e * matrixBytes, packedRows, hidden, paddedHidden, dtype,
               [&](int r) {
                 // Rows 16b..16b+7 are gate features 8b..8b+7, rows 16b+8..16b+15 the up features.
                 const int feature = r / 16 * 8 + r % 8;
                 const MatrixSource* source = r % 16 < 8 ? &gate[e] : &up[e];
                 return RowOrigin{feature < ffn ? source : nullptr, feature};
               },
               what);
  }
  return buffer;
}

}  // namespace dynamoe::cuda

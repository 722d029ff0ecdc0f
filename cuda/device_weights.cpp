#include "device_weights.h"

#include "../native/core/quant.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <string>

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

// Fills `rows` packed rows of `rowBytes` each, staged `kStagingBytes` at a time, at device `destination`: `fill`
// writes a row from its origin into zeroed staging (rows without a source stay zero).
void uploadRows(char* destination, int rows, size_t rowBytes, const std::function<RowOrigin(int)>& origin,
                const std::function<void(const RowOrigin&, char*)>& fill, const char* what) {
  const int rowsPerSlice = static_cast<int>(std::max<size_t>(1, kStagingBytes / rowBytes));
  std::vector<char> staging(static_cast<size_t>(std::min(rows, rowsPerSlice)) * rowBytes);
  for (int first = 0; first < rows; first += rowsPerSlice) {
    const int count = std::min(rowsPerSlice, rows - first);
    std::fill(staging.begin(), staging.end(), 0);  // zero bits are 0.0 in every dtype, and a zero block is 0s
    for (int r = 0; r < count; ++r) {
      const RowOrigin from = origin(first + r);
      if (from.source != nullptr) fill(from, staging.data() + static_cast<size_t>(r) * rowBytes);
    }
    checkCuda(cudaMemcpy(destination + static_cast<size_t>(first) * rowBytes, staging.data(), count * rowBytes,
                         cudaMemcpyHostToDevice),
              what);
  }
}

// Rows of k values converted to `dtype` (paddedK a row, zero past k), or rows of k quantized values copied as they
// are (quantRowBytes(type, paddedK) a row, zero blocks past k).
struct RowFormat {
  DType dtype = DType::F32;
  QuantType quant = QuantType::None;
  int k = 0, paddedK = 0;

  size_t rowBytes() const {
    return quant != QuantType::None ? quantRowBytes(quant, paddedK) : static_cast<size_t>(paddedK) * dtypeBytes(dtype);
  }
  void fill(const RowOrigin& from, char* row) const {
    if (quant != QuantType::None) {
      const size_t sourceRowBytes = quantRowBytes(quant, k);
      std::memcpy(row, static_cast<const char*>(from.source->data) + static_cast<size_t>(from.row) * sourceRowBytes,
                  sourceRowBytes);
      return;
    }
    const size_t base = static_cast<size_t>(from.row) * k;
    for (int i = 0; i < k; ++i) storeAs(dtype, row, i, loadAsF32(from.source->data, base + i, from.source->dtype));
  }
};

RowFormat formatOf(const std::vector<MatrixSource>& sources, int k, int paddedK, DType dtype, const char* what) {
  RowFormat format{dtype, sources.empty() ? QuantType::None : sources[0].quant, k, paddedK};
  for (const MatrixSource& source : sources) {
    if (source.quant != format.quant) {
      throw Error(code::kUnsupported, std::string(what) + ": on CUDA the matrices of one kind must share a type, found " +
                                          quantTraits(format.quant).name + " and " + quantTraits(source.quant).name);
    }
  }
  if (format.quant != QuantType::None && (k % quantTraits(format.quant).blockElements != 0 ||
                                          paddedK % quantTraits(format.quant).blockElements != 0)) {
    throw Error(code::kShape, std::string(what) + ": rows of " + std::to_string(k) + " values are not whole " +
                                  quantTraits(format.quant).name + " blocks");
  }
  return format;
}

}  // namespace

QuantType sharedQuantType(const std::vector<MatrixSource>& sources, const char* what) {
  return formatOf(sources, 0, 0, DType::F32, what).quant;
}

size_t packedRowBytes(QuantType quant, DType dtype, int paddedK) {
  return RowFormat{dtype, quant, paddedK, paddedK}.rowBytes();
}

MatrixSource plainSource(const MatrixSource& source, int rows, int cols, std::vector<float>* storage) {
  if (source.quant == QuantType::None) return source;
  if (cols % quantTraits(source.quant).blockElements != 0) {
    throw Error(code::kShape, std::string("rows of ") + std::to_string(cols) + " values are not whole " +
                                  quantTraits(source.quant).name + " blocks");
  }
  storage->resize(static_cast<size_t>(rows) * cols);
  const size_t rowBytes = quantRowBytes(source.quant, cols);
  for (int r = 0; r < rows; ++r) {
    dequantizeRow(source.quant, static_cast<const uint8_t*>(source.data) + r * rowBytes, cols,
                  storage->data() + static_cast<size_t>(r) * cols);
  }
  return MatrixSource{storage->data(), DType::F32, QuantType::None};
}

DeviceBuffer uploadMatrices(const std::vector<MatrixSource>& sources, int rows, int paddedRows, int k,
                            int paddedK, DType dtype, const char* what) {
  const RowFormat format = formatOf(sources, k, paddedK, dtype, what);
  const size_t matrixBytes = static_cast<size_t>(paddedRows) * format.rowBytes();
  DeviceBuffer buffer(matrixBytes * sources.size(), what);
  for (size_t e = 0; e < sources.size(); ++e) {
    const MatrixSource* source = &sources[e];
    uploadRows(buffer.as<char>() + e * matrixBytes, paddedRows, format.rowBytes(),
               [&](int r) { return RowOrigin{r < rows ? source : nullptr, r}; },
               [&](const RowOrigin& from, char* row) { format.fill(from, row); }, what);
  }
  return buffer;
}

DeviceBuffer uploadGateUp(const std::vector<MatrixSource>& gate, const std::vector<MatrixSource>& up,
                          int ffn, int paddedFfn, int hidden, int paddedHidden, DType dtype, const char* what) {
  std::vector<MatrixSource> both = gate;
  both.insert(both.end(), up.begin(), up.end());
  const RowFormat format = formatOf(both, hidden, paddedHidden, dtype, what);
  const int packedRows = 2 * paddedFfn;
  const size_t matrixBytes = static_cast<size_t>(packedRows) * format.rowBytes();
  DeviceBuffer buffer(matrixBytes * gate.size(), what);
  for (size_t e = 0; e < gate.size(); ++e) {
    uploadRows(buffer.as<char>() + e * matrixBytes, packedRows, format.rowBytes(),
               [&](int r) {
                 // Rows 16b..16b+7 are gate features 8b..8b+7, rows 16b+8..16b+15 the up features.
                 const int feature = r / 16 * 8 + r % 8;
                 const MatrixSource* source = r % 16 < 8 ? &gate[e] : &up[e];
                 return RowOrigin{feature < ffn ? source : nullptr, feature};
               },
               [&](const RowOrigin& from, char* row) { format.fill(from, row); }, what);
  }
  return buffer;
}

}  // namespace dynamoe::cuda

// Builds a kernel family's TileKernels table from its Tile<W, MR>::run and Widen<W>::run templates: one tile entry
// point per weight dtype that dispatches on the row count, and the 16-bit panel wideners. Included only by the
// tile_kernels_<isa>.cpp files; internal linkage, so each family's code is compiled with that file's flags and
// the linker can never merge it with another family's (or baseline) code.
#pragma once

#include <utility>

#include "tile_kernels.h"

namespace dynamoe::cpu {
namespace {

template <template <DType, int> class Tile, DType W, size_t... Index>
void runTileRows(const TileJob& job, std::index_sequence<Index...>) {
  static constexpr TileFn byRows[] = {&Tile<W, static_cast<int>(Index) + 1>::run...};
  byRows[job.rowCount - 1](job);
}

template <template <DType, int> class Tile, DType W, int MaxRows>
void runTile(const TileJob& job) {
  runTileRows<Tile, W>(job, std::make_index_sequence<MaxRows>{});
}

// Widen<W>::run may be a null WidenFn constant: that dtype's tiles read the stored panel directly.
template <template <DType, int> class Tile, template <DType> class Widen, int MaxRows, int MaxStreamingRows = MaxRows>
TileKernels tileFamily(Isa isa, AttendFn attend, QuantDotFn quantDot, SwiGluFn swiGlu,
                       RoundRowFn roundRowBf16 = nullptr) {
  return {isa,
          MaxRows,
          MaxStreamingRows,
          {runTile<Tile, DType::F32, MaxRows>, runTile<Tile, DType::F16, MaxRows>,
           runTile<Tile, DType::BF16, MaxRows>},
          {nullptr, Widen<DType::F16>::run, Widen<DType::BF16>::run},
          attend,
          roundRowBf16,
          quantDot,
          swiGlu};
}

}  // namespace
}  // namespace dynamoe::cpu

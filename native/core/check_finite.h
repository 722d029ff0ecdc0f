// Rejects NaN / Infinity in float inputs with ERR_DYNAMOE_VALUE, naming the first offending token and column.
#pragma once

#include <cmath>
#include <cstddef>
#include <string>

#include "errors.h"

namespace dynamoe {

// Checks `rows` rows of `columns` values (row stride `stride`); `columnName` says what a column is ("expert").
inline void checkFinite(const float* values, int rows, int columns, size_t stride, const char* what,
                        const char* columnName) {
  for (int t = 0; t < rows; ++t) {
    const float* row = values + static_cast<size_t>(t) * stride;
    for (int c = 0; c < columns; ++c) {
      if (!std::isfinite(row[c])) {
        throw Error(code::kValue, std::string(what) + " must be finite, found " + std::to_string(row[c]) +
                                      " at token " + std::to_string(t) + ", " + columnName + " " + std::to_string(c));
      }
    }
  }
}

}  // namespace dynamoe

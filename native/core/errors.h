// Error type shared by native code: every failure carries a stable code the JS layer exposes as `error.code`.
#pragma once

#include <stdexcept>
#include <string>

namespace dynamoe {

// Stable error codes (keep in sync with lib/errors.ts).
namespace code {
constexpr const char* kType = "ERR_DYNAMOE_TYPE";          // wrong kind of value (not a Float32Array, ...)
constexpr const char* kShape = "ERR_DYNAMOE_SHAPE";        // sizes not positive integers, lengths that disagree
constexpr const char* kPolicy = "ERR_DYNAMOE_POLICY";      // unknown routing policy or parameter out of range
constexpr const char* kValue = "ERR_DYNAMOE_VALUE";        // NaN / Infinity in numeric input
constexpr const char* kDtype = "ERR_DYNAMOE_DTYPE";        // unknown dtype or data that does not match it
constexpr const char* kDisposed = "ERR_DYNAMOE_DISPOSED";  // object used after dispose()
constexpr const char* kOutOfMemory = "ERR_DYNAMOE_OUT_OF_MEMORY";
constexpr const char* kUnsupported = "ERR_DYNAMOE_UNSUPPORTED";  // valid, but not built or not implemented here
constexpr const char* kDevice = "ERR_DYNAMOE_DEVICE";  // the device asked for is missing, failed, or does not match
constexpr const char* kInternal = "ERR_DYNAMOE_INTERNAL";
}  // namespace code

class Error : public std::runtime_error {
 public:
  Error(const char* code, const std::string& message) : std::runtime_error(message), code_(code) {}
  const char* code() const { return code_; }

 private:
  const char* code_;
};

}  // namespace dynamoe

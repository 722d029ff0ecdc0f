// Turning dynamoe::Error codes into JS errors with a `code` property.
#pragma once

#include <napi.h>

#include <string>

#include "../core/errors.h"

namespace dynamoe {

inline Napi::Error makeJsError(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  return error;
}

[[noreturn]] inline void throwJs(Napi::Env env, const char* code, const std::string& message) {
  throw makeJsError(env, code, message);
}

// Runs `body`, converting native errors thrown on the JS thread into JS exceptions with their code.
template <typename Body>
auto translateErrors(Napi::Env env, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Error& e) {
    throwJs(env, e.code(), e.what());
  } catch (const std::bad_alloc&) {
    throwJs(env, code::kOutOfMemory, "out of memory");
  }
}

}  // namespace dynamoe

#pragma once

#include <napi.h>

namespace dynamoe {

Napi::Value Route(const Napi::CallbackInfo& info);

}  // namespace dynamoe

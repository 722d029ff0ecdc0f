// routerLosses(logits, { tokens, experts, gradients }, policy): the paper's router losses, on a worker thread.
#pragma once

#include <napi.h>

namespace dynamoe {

Napi::Value RouterLosses(const Napi::CallbackInfo& info);

}  // namespace dynamoe

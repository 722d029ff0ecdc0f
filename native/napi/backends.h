// The backends the addon can run on, by device name: every binding picks its backend here.
#pragma once

#include <napi.h>

#include "../core/backend.h"

namespace dynamoe {

// 'cpu' or 'cuda' (undefined: `fallback`); any other value throws ERR_DYNAMOE_VALUE. The backend may still be
// unusable here: call requireUsable() before work that needs it.
const Backend& backendForDevice(const Napi::Value& device, const char* fallback = "cpu");

}  // namespace dynamoe

// Per-environment addon state (the main thread and each worker thread have their own).
#pragma once

#include <napi.h>

namespace dynamoe {

struct AddonData {
  Napi::FunctionReference moeLayer;   // for MoeLayer.pack() to build instances with
  Napi::FunctionReference kvSession;  // for ModelGraph.createSession()
};

// Created on first use; freed by Node with the environment.
inline AddonData& addonData(Napi::Env env) {
  AddonData* data = env.GetInstanceData<AddonData>();
  if (data == nullptr) {
    data = new AddonData();
    env.SetInstanceData(data);
  }
  return *data;
}

}  // namespace dynamoe

// The JS MoELayer class: owns one MoeLayer (CPU or CUDA); forward() and profile() run on a worker thread.
#pragma once

#include <napi.h>

#include <memory>

#include "../core/backend.h"
#include "../core/routing_policy.h"

namespace dynamoe {

class MoeLayerBinding : public Napi::ObjectWrap<MoeLayerBinding> {
 public:
  static Napi::Function define(Napi::Env env);
  explicit MoeLayerBinding(const Napi::CallbackInfo& info);
  ~MoeLayerBinding() override;

 private:
  static Napi::Value pack(const Napi::CallbackInfo& info);
  struct ForwardArguments {
    std::shared_ptr<const MoeLayer> layer;
    Napi::Float32Array x;
    int tokens;
    RoutingPolicy policy;
    Napi::Object options;
  };
  ForwardArguments readForwardArguments(const Napi::CallbackInfo& info) const;
  Napi::Value forward(const Napi::CallbackInfo& info);
  Napi::Value profile(const Napi::CallbackInfo& info);
  Napi::Value device(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value weightBytes(const Napi::CallbackInfo& info);
  Napi::Value disposed(const Napi::CallbackInfo& info);
  const std::shared_ptr<const MoeLayer>& requireLayer(Napi::Env env) const;
  void release(Napi::Env env);

  // Shared with running forwards, so dispose() during a forward frees the weights when that forward ends.
  std::shared_ptr<const MoeLayer> layer_;
  int64_t externalBytes_ = 0;
};

}  // namespace dynamoe

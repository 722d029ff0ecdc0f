// The JS MoELayer class: owns one packed cpu::MoeLayer; forward() runs on a worker thread.
#pragma once

#include <napi.h>

#include <memory>

#include "cpu/moe_layer.h"

namespace dynamoe {

class MoeLayerBinding : public Napi::ObjectWrap<MoeLayerBinding> {
 public:
  static Napi::Function define(Napi::Env env);
  explicit MoeLayerBinding(const Napi::CallbackInfo& info);
  ~MoeLayerBinding() override;

 private:
  static Napi::Value pack(const Napi::CallbackInfo& info);
  Napi::Value forward(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value weightBytes(const Napi::CallbackInfo& info);
  Napi::Value disposed(const Napi::CallbackInfo& info);
  const std::shared_ptr<const cpu::MoeLayer>& requireLayer(Napi::Env env) const;
  void release(Napi::Env env);

  // Shared with running forwards, so dispose() during a forward frees the weights when that forward ends.
  std::shared_ptr<const cpu::MoeLayer> layer_;
  int64_t externalBytes_ = 0;
};

}  // namespace dynamoe

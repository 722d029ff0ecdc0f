// The JS object a routing result resolves to, allocated on the JS thread and filled in place by a worker thread.
#pragma once

#include <napi.h>

#include "../core/routing_output.h"

namespace dynamoe {

class RoutingResultArrays {
 public:
  RoutingResultArrays(Napi::Env env, int tokens, int experts, int kMax) {
    const size_t slots = static_cast<size_t>(tokens) * kMax;
    Napi::Int32Array ids = Napi::Int32Array::New(env, slots);
    Napi::Float32Array weights = Napi::Float32Array::New(env, slots);
    Napi::Int32Array counts = Napi::Int32Array::New(env, tokens);
    Napi::Int32Array expertLoad = Napi::Int32Array::New(env, experts);
    Napi::Object object = Napi::Object::New(env);
    object.Set("kMax", Napi::Number::New(env, kMax));
    object.Set("ids", ids);
    object.Set("weights", weights);
    object.Set("counts", counts);
    object.Set("expertLoad", expertLoad);
    output_ = {kMax, ids.Data(), weights.Data(), counts.Data(), expertLoad.Data()};
    object_ = Napi::Persistent(object);  // keeps the buffers alive while the worker writes them
  }

  const RoutingOutput& output() const { return output_; }
  Napi::Object value() const { return object_.Value(); }

 private:
  RoutingOutput output_;
  Napi::ObjectReference object_;
};

}  // namespace dynamoe

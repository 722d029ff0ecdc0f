// routerLosses(logits, { tokens, experts, gradients }, policy): checks, then cpu::computeRouterLosses off-thread.
#include "router_losses_binding.h"

#include <vector>

#include "../core/check_finite.h"
#include "../cpu/router_losses.h"
#include "js_args.h"
#include "promise_worker.h"

namespace dynamoe {

namespace {

class RouterLossesWorker : public PromiseWorker {
 public:
  RouterLossesWorker(Napi::Env env, Napi::Float32Array logits, int tokens, int experts, const RoutingPolicy& policy,
                     bool gradients)
      : PromiseWorker(env),
        logits_(logits.Data(), logits.Data() + logits.ElementLength()),  // a copy: JS may change its array meanwhile
        tokens_(tokens),
        experts_(experts),
        policy_(policy) {
    // Result arrays are made here, on the JS thread, and filled in place by run().
    Napi::Float64Array fraction = Napi::Float64Array::New(env, experts);
    Napi::Float64Array meanProbability = Napi::Float64Array::New(env, experts);
    Napi::Int32Array counts = Napi::Int32Array::New(env, tokens);
    Napi::Object object = Napi::Object::New(env);
    object.Set("fraction", fraction);
    object.Set("meanProbability", meanProbability);
    object.Set("counts", counts);
    output_.fraction = fraction.Data();
    output_.meanProbability = meanProbability.Data();
    output_.counts = counts.Data();
    if (gradients) {
      const size_t elements = static_cast<size_t>(tokens) * experts;
      Napi::Float32Array dynamicLossGradient = Napi::Float32Array::New(env, elements);
      Napi::Float32Array loadBalanceLossGradient = Napi::Float32Array::New(env, elements);
      object.Set("dynamicLossGradient", dynamicLossGradient);
      object.Set("loadBalanceLossGradient", loadBalanceLossGradient);
      output_.dynamicLossGradient = dynamicLossGradient.Data();
      output_.loadBalanceLossGradient = loadBalanceLossGradient.Data();
    }
    object_ = Napi::Persistent(object);  // keeps the buffers alive while the worker writes them
  }

 protected:
  void run() override {
    checkFinite(logits_.data(), tokens_, experts_, experts_, "logits", "expert");
    values_ = cpu::computeRouterLosses(logits_.data(), tokens_, experts_, policy_, output_);
  }

  Napi::Value result(Napi::Env env) override {
    Napi::Object object = object_.Value();
    object.Set("dynamicLoss", Napi::Number::New(env, values_.dynamicLoss));
    object.Set("loadBalanceLoss", Napi::Number::New(env, values_.loadBalanceLoss));
    object.Set("expertsPerToken", Napi::Number::New(env, values_.expertsPerToken));
    return object;
  }

 private:
  std::vector<float> logits_;
  int tokens_;
  int experts_;
  RoutingPolicy policy_;
  cpu::RouterLossOutput output_;
  cpu::RouterLossValues values_;
  Napi::ObjectReference object_;
};

}  // namespace

Napi::Value RouterLosses(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object options = requireObject(info[1], "options");
  const auto [logits, tokens, experts] = readRouterScores(info[0], options);
  const RoutingPolicy policy = readPolicy(info[2], experts);
  const bool gradients = readBool(options, "gradients", false);
  auto* worker = new RouterLossesWorker(env, logits, tokens, experts, policy, gradients);
  return worker->start();
}

}  // namespace dynamoe

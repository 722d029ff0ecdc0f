// route(scores, sizes, policy, input, device): routing alone, on a worker thread (CPU kernels or the CUDA kernel).
#include "route_binding.h"

#include <cmath>
#include <vector>

#include "backends.h"
#include "js_args.h"
#include "js_errors.h"
#include "promise_worker.h"
#include "routing_result.h"

namespace dynamoe {

namespace {

class RouteWorker : public PromiseWorker {
 public:
  RouteWorker(Napi::Env env, Napi::Float32Array scores, int tokens, int experts, const RoutingPolicy& policy,
              const RouterRule& rule, RouterInput input, const Backend& backend)
      : PromiseWorker(env),
        scores_(scores.Data(), scores.Data() + scores.ElementLength()),  // a copy: JS may change its array meanwhile
        tokens_(tokens),
        experts_(experts),
        policy_(policy),
        rule_(rule),
        // A copy of the selection bias too; the rule points at it.
        selectionBias_(rule.selectionBias ? rule.selectionBias : nullptr,
                       rule.selectionBias ? rule.selectionBias + experts : nullptr),
        input_(input),
        backend_(backend),
        result_(env, tokens, experts, policy.kMax(experts)) {
    rule_.selectionBias = selectionBias_.empty() ? nullptr : selectionBias_.data();
  }

 protected:
  void run() override {
    for (size_t i = 0; i < scores_.size(); ++i) {
      const float v = scores_[i];
      const bool valid = input_ == RouterInput::Logits ? std::isfinite(v) : (v >= 0.0f && v <= 1.0f);
      if (!valid) {
        throw Error(code::kValue, std::string(input_ == RouterInput::Logits
                                                  ? "logits must be finite"
                                                  : "probabilities must be in [0, 1]") +
                                      ", found " + std::to_string(v) + " at token " +
                                      std::to_string(i / experts_) + ", expert " + std::to_string(i % experts_));
      }
    }
    backend_.route(scores_.data(), experts_, tokens_, experts_, input_, policy_, rule_, result_.output());
  }
  Napi::Value result(Napi::Env) override { return result_.value(); }

 private:
  std::vector<float> scores_;
  int tokens_;
  int experts_;
  RoutingPolicy policy_;
  RouterRule rule_;
  std::vector<float> selectionBias_;
  RouterInput input_;
  const Backend& backend_;
  RoutingResultArrays result_;
};

}  // namespace

Napi::Value Route(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object sizes = requireObject(info[1], "options");
  const auto [scores, tokens, experts] = readRouterScores(info[0], sizes);
  const RoutingPolicy policy = readPolicy(info[2], experts);
  const std::string input = info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : "logits";
  if (input != "logits" && input != "probabilities") {
    throwJs(env, code::kType, "input must be 'logits' or 'probabilities', got '" + input + "'");
  }
  const RouterRule rule = readRouterRule(info[5], experts, "router");
  if (!rule.plain() && input != "logits") {
    throwJs(env, code::kPolicy, "a router rule other than the plain softmax routes logits, not probabilities");
  }
  translateErrors(env, [&] { validateRouterRule(rule, policy, experts); });
  const Backend& backend = backendForDevice(info[4].IsString() ? info[4] : env.Undefined());
  translateErrors(env, [&] { backend.requireUsable(); });
  auto* worker = new RouteWorker(env, scores, tokens, experts, policy, rule,
                                 input == "logits" ? RouterInput::Logits : RouterInput::Probabilities,
                                 backend);
  return worker->start();
}

}  // namespace dynamoe

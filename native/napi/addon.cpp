// The addon's exports table; each entry lives in its own file.
#include <napi.h>

#include "model_graph_binding.h"
#include "moe_layer_binding.h"
#include "quant_binding.h"
#include "route_binding.h"
#include "router_losses_binding.h"
#include "runtime_binding.h"
#include "token_choice_binding.h"

namespace dynamoe {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("route", Napi::Function::New<Route>(env, "route"));
  exports.Set("routerLosses", Napi::Function::New<RouterLosses>(env, "routerLosses"));
  exports.Set("MoeLayer", MoeLayerBinding::define(env));
  exports.Set("ModelGraph", ModelGraphBinding::define(env));
  exports.Set("setThreads", Napi::Function::New<SetThreads>(env, "setThreads"));
  exports.Set("getThreads", Napi::Function::New<GetThreads>(env, "getThreads"));
  exports.Set("cpuInfo", Napi::Function::New<CpuInfo>(env, "cpuInfo"));
  exports.Set("setCpuIsa", Napi::Function::New<SetCpuIsa>(env, "setCpuIsa"));
  exports.Set("measureRoofline", Napi::Function::New<MeasureRoofline>(env, "measureRoofline"));
  exports.Set("backendInfo", Napi::Function::New<BackendInfo>(env, "backendInfo"));
  exports.Set("dequantize", Napi::Function::New<Dequantize>(env, "dequantize"));
  exports.Set("quantize", Napi::Function::New<Quantize>(env, "quantize"));
  exports.Set("quantMatmul", Napi::Function::New<QuantMatmul>(env, "quantMatmul"));
  exports.Set("chooseTokens", Napi::Function::New<ChooseTokens>(env, "chooseTokens"));
  exports.Set("setQuantActivations", Napi::Function::New<SetQuantActivations>(env, "setQuantActivations"));
  return exports;
}

}  // namespace dynamoe

static Napi::Object InitDynamoe(Napi::Env env, Napi::Object exports) { return dynamoe::Init(env, exports); }

NODE_API_MODULE(dynamoe, InitDynamoe)

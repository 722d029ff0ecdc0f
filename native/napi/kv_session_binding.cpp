#include "kv_session_binding.h"

#include "addon_data.h"
#include "js_errors.h"

namespace dynamoe {

Napi::Function KvSessionBinding::define(Napi::Env env) {
  Napi::Function constructor = DefineClass(env, "KvSession",
                                           {InstanceAccessor<&KvSessionBinding::length>("length"),
                                            InstanceAccessor<&KvSessionBinding::capacity>("capacity"),
                                            InstanceMethod<&KvSessionBinding::reset>("reset"),
                                            InstanceMethod<&KvSessionBinding::dispose>("dispose")});
  addonData(env).kvSession = Napi::Persistent(constructor);
  return constructor;
}

KvSessionBinding::KvSessionBinding(const Napi::CallbackInfo& info) : Napi::ObjectWrap<KvSessionBinding>(info) {
  if (!info[0].IsExternal()) throwJs(info.Env(), code::kType, "sessions are created by model.createSession()");
  Init* init = info[0].As<Napi::External<Init>>().Data();
  cache_ = init->cache;
  graph_ = init->graph;
  externalBytes_ = static_cast<int64_t>(cache_->bytes());
  Napi::MemoryManagement::AdjustExternalMemory(info.Env(), externalBytes_);
}

KvSessionBinding::~KvSessionBinding() {
  if (cache_) Napi::MemoryManagement::AdjustExternalMemory(Env(), -externalBytes_);
}

std::shared_ptr<Sequence> KvSessionBinding::acquire(Napi::Env env, const void* graph) {
  if (!cache_) throwJs(env, code::kDisposed, "this session was disposed");
  if (graph != graph_) throwJs(env, code::kType, "this session belongs to another model");
  if (busy_->exchange(true)) {
    throwJs(env, code::kValue, "this session is already running a forward; await it before the next step");
  }
  return cache_;
}

Napi::Value KvSessionBinding::length(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), cache_ ? cache_->length() : 0);
}

Napi::Value KvSessionBinding::capacity(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), cache_ ? cache_->capacity() : 0);
}

Napi::Value KvSessionBinding::reset(const Napi::CallbackInfo& info) {
  if (!cache_) throwJs(info.Env(), code::kDisposed, "this session was disposed");
  if (busy_->load()) throwJs(info.Env(), code::kValue, "this session is running a forward; await it first");
  cache_->reset();
  return info.Env().Undefined();
}

Napi::Value KvSessionBinding::dispose(const Napi::CallbackInfo& info) {
  // A running forward keeps its own reference; the memory goes when it ends.
  if (cache_) Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -externalBytes_);
  cache_.reset();
  return info.Env().Undefined();
}

}  // namespace dynamoe

// The JS ModelGraph class: a model's native ops, built node by node (weights packed on worker threads), then run
// one whole forward step per async call.
#pragma once

#include <napi.h>

#include <memory>
#include <vector>

#include "../core/backend.h"

namespace dynamoe {

struct SegmentCall;

class ModelGraphBinding : public Napi::ObjectWrap<ModelGraphBinding> {
 public:
  static Napi::Function define(Napi::Env env);
  explicit ModelGraphBinding(const Napi::CallbackInfo& info);
  ~ModelGraphBinding() override;

  // Called on the JS thread when a node's weights are packed.
  void nodeAdded(Napi::Env env);
  void buildFinished() { building_ = false; }

 private:
  Napi::Value addNode(const Napi::CallbackInfo& info);
  Napi::Value createSession(const Napi::CallbackInfo& info);
  Napi::Value forward(const Napi::CallbackInfo& info);
  Napi::Value step(const Napi::CallbackInfo& info);
  Napi::Value kvPool(const Napi::CallbackInfo& info);
  void readSegment(Napi::Env env, const Napi::Value& tokens, const Napi::Value& options, SegmentCall& segment) const;
  void takeSession(Napi::Env env, const Napi::Value& session, SegmentCall& segment) const;
  Napi::Value startStep(Napi::Env env, std::vector<SegmentCall> segments, bool asArray);
  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value weightBytes(const Napi::CallbackInfo& info);
  Napi::Value disposed(const Napi::CallbackInfo& info);
  const std::shared_ptr<Model>& requireGraph(Napi::Env env) const;

  std::shared_ptr<Model> graph_;  // a backend's model, shared with running forwards and node builds
  DType dtype_ = DType::F32;
  bool building_ = false;  // a node is being packed
  bool sealed_ = false;    // a forward ran: no more nodes, so running forwards never see the op list change
  int64_t externalBytes_ = 0;
};

}  // namespace dynamoe

// The JS ModelGraph class: a model's native ops, built node by node (weights packed on worker threads), then run
// one whole forward step per async call.
#pragma once

#include <napi.h>

#include <memory>

#include "cpu/model_graph.h"
#include "graph_node_reader.h"

namespace dynamoe {

class ModelGraphBinding : public Napi::ObjectWrap<ModelGraphBinding> {
 public:
  static Napi::Function define(Napi::Env env);
  explicit ModelGraphBinding(const Napi::CallbackInfo& info);
  ~ModelGraphBinding() override;

  // Called on the JS thread when a node's weights are packed.
  void appendOp(Napi::Env env, std::unique_ptr<cpu::GraphOp> op);
  void buildFinished() { building_ = false; }

 private:
  Napi::Value addNode(const Napi::CallbackInfo& info);
  Napi::Value createSession(const Napi::CallbackInfo& info);
  Napi::Value forward(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value weightBytes(const Napi::CallbackInfo& info);
  Napi::Value disposed(const Napi::CallbackInfo& info);
  const std::shared_ptr<cpu::ModelGraph>& requireGraph(Napi::Env env) const;

  std::shared_ptr<cpu::ModelGraph> graph_;  // shared with running forwards
  std::shared_ptr<GraphBuildState> buildState_ = std::make_shared<GraphBuildState>();
  // Step scratch of this model's ended sequences, for its next ones; shared with the sequences alive.
  std::shared_ptr<cpu::ScratchPool> scratchPool_ = std::make_shared<cpu::ScratchPool>();
  DType dtype_ = DType::F32;
  bool building_ = false;  // a node is being packed
  bool sealed_ = false;    // a forward ran: no more nodes, so running forwards never see the op list change
  int64_t externalBytes_ = 0;
};

}  // namespace dynamoe

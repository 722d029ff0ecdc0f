// The JS handle of one sequence's KV cache; a forward that uses it appends to it.
#pragma once

#include <napi.h>

#include <atomic>
#include <memory>

#include "../core/model_step.h"

namespace dynamoe {

class KvSessionBinding : public Napi::ObjectWrap<KvSessionBinding> {
 public:
  static Napi::Function define(Napi::Env env);
  // Built by ModelGraph.createSession with (External<Init>).
  struct Init {
    std::shared_ptr<Sequence> cache;
    const void* graph;
  };
  explicit KvSessionBinding(const Napi::CallbackInfo& info);
  ~KvSessionBinding() override;

  // The cache for one forward of `graph`; throws when disposed, made for another graph, or already in use.
  std::shared_ptr<Sequence> acquire(Napi::Env env, const void* graph);
  // Shared with the forward using it; cleared when that forward ends.
  const std::shared_ptr<std::atomic<bool>>& busy() const { return busy_; }

 private:
  Napi::Value length(const Napi::CallbackInfo& info);
  Napi::Value capacity(const Napi::CallbackInfo& info);
  Napi::Value reset(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);

  std::shared_ptr<Sequence> cache_;
  const void* graph_ = nullptr;
  std::shared_ptr<std::atomic<bool>> busy_ = std::make_shared<std::atomic<bool>>(false);
  int64_t externalBytes_ = 0;
};

}  // namespace dynamoe

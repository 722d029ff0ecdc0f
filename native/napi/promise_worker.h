// Base for every heavy call: run() on a libuv worker thread, a Promise resolved (or rejected with a coded error)
// back on the JS thread, so the event loop never waits on math.
#pragma once

#include <napi.h>

#include <new>

#include "js_errors.h"

namespace dynamoe {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env) : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)) {}

  // Queues the work and returns its promise.
  Napi::Promise start() {
    Napi::Promise promise = deferred_.Promise();
    Queue();
    return promise;
  }

 protected:
  virtual void run() = 0;                          // worker thread: no JS access
  virtual Napi::Value result(Napi::Env env) = 0;   // JS thread

 private:
  void Execute() override {
    try {
      run();
    } catch (const Error& e) {
      fail(e.code(), e.what());
    } catch (const std::bad_alloc&) {
      fail(code::kOutOfMemory, "out of memory while running on the CPU backend");
    } catch (const std::exception& e) {
      fail(code::kInternal, e.what());
    }
  }
  void fail(const char* code, const char* message) {
    code_ = code;
    SetError(message);
  }
  void OnOK() override { deferred_.Resolve(result(Env())); }
  void OnError(const Napi::Error& error) override {
    deferred_.Reject(makeJsError(Env(), code_, error.Message()).Value());
  }

  Napi::Promise::Deferred deferred_;
  const char* code_ = code::kInternal;
};

}  // namespace dynamoe

// Process-wide settings and facts: thread count, CPU features, which kernel family runs.
#pragma once

#include <napi.h>

namespace dynamoe {

Napi::Value SetThreads(const Napi::CallbackInfo& info);
Napi::Value GetThreads(const Napi::CallbackInfo& info);
Napi::Value CpuInfo(const Napi::CallbackInfo& info);
Napi::Value SetCpuIsa(const Napi::CallbackInfo& info);
// Resolves to { isa, threads, fmaGflops, readGBps } for the active kernel family.
Napi::Value MeasureRoofline(const Napi::CallbackInfo& info);
// What the CUDA backend found: built in or not, GPU and driver, or why it is not used.
Napi::Value BackendInfo(const Napi::CallbackInfo& info);

}  // namespace dynamoe

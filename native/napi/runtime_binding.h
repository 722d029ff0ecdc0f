// Process-wide settings and facts: thread count, CPU features, which kernel family runs.
#pragma once

#include <napi.h>

namespace dynamoe {

Napi::Value SetThreads(const Napi::CallbackInfo& info);
Napi::Value GetThreads(const Napi::CallbackInfo& info);
Napi::Value CpuInfo(const Napi::CallbackInfo& info);
Napi::Value SetCpuIsa(const Napi::CallbackInfo& info);
// setQuantActivations('q8' | 'f32'): integer dots on 8-bit activations for Q8_0, Q4_0, MXFP4, Q4_K, Q5_K and Q6_K weights,
// or the exact f32 path for every quantized type (cpu/quant_int.h).
Napi::Value SetQuantActivations(const Napi::CallbackInfo& info);
// Resolves to { isa, threads, fmaGflops, readGBps } for the active kernel family.
Napi::Value MeasureRoofline(const Napi::CallbackInfo& info);
// What the CUDA backend found: built in or not, GPU and driver, or why it is not used.
Napi::Value BackendInfo(const Napi::CallbackInfo& info);

}  // namespace dynamoe

// NVTX ranges (NVTX3, header-only) so Nsight timelines read like the model: "moe/forward" carries the layer and
// token counts in its message, and each stage inside it ("moe/route", "moe/plan", "moe/gemm1_swiglu", "moe/gemm2",
// "moe/finalize") carries the token count as its payload, so the stage names stay fixed strings that
// `ncu --nvtx-include 'moe\/gemm1_swiglu/'` can match (ncu reads an unescaped '/' as range nesting).
#pragma once

#include <nvtx3/nvToolsExt.h>

#include <cstdint>
#include <cstdio>

namespace dynamoe::cuda {

class NvtxRange {
 public:
  // A stage range: exact name, token count as the payload.
  NvtxRange(const char* name, int tokens) { push(name, tokens); }
  // The forward's range: "moe/forward layer=L tokens=T experts=E".
  NvtxRange(int layer, int tokens, int experts) {
    char message[96];
    std::snprintf(message, sizeof(message), "moe/forward layer=%d tokens=%d experts=%d", layer, tokens, experts);
    push(message, tokens);
  }
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
  ~NvtxRange() { nvtxRangePop(); }

 private:
  static void push(const char* message, int tokens) {
    nvtxEventAttributes_t attributes = {};
    attributes.version = NVTX_VERSION;
    attributes.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    attributes.messageType = NVTX_MESSAGE_TYPE_ASCII;
    attributes.message.ascii = message;
    attributes.payloadType = NVTX_PAYLOAD_TYPE_INT64;
    attributes.payload.llValue = tokens;
    nvtxRangePushEx(&attributes);
  }
};

}  // namespace dynamoe::cuda

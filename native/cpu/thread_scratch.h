// Per-thread scratch reused from call to call, so the forward's hot path neither allocates nor faults in fresh
// pages each time. Small and medium requests (decode, small batches) are served from buffers the calling thread
// keeps; a request over kRetainedScratchBytes gets a buffer of its own for that call, so what stays allocated per
// thread is bounded (kRetainedScratchBytes per slot).
#pragma once

#include <cstddef>

#include "../aligned_buffer.h"

namespace dynamoe::cpu {

// One per buffer a single call needs at the same time.
enum class ScratchSlot { RouterLogits, Intermediate, RowOutput, StagedRows, Count };

constexpr size_t kRetainedScratchBytes = size_t{4} << 20;

// `bytes` of 64-byte-aligned, uninitialised scratch for `slot`, valid until the next request for the same slot on
// this thread or until `oversize` goes (when the request was too large to keep).
void* threadScratch(ScratchSlot slot, size_t bytes, AlignedBuffer& oversize);

}  // namespace dynamoe::cpu

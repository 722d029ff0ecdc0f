// Scratch reused from call to call, so the forward's hot path neither allocates nor faults in fresh pages each
// time. Each thread keeps a set of buffers (threadScratchBuffers) for small and medium requests (decode, small
// batches); a request over kRetainedScratchBytes gets a buffer of its own for that call, so what stays allocated
// per thread is bounded. A model session keeps a set of its own with no such limit (its steps are bounded by its
// context), so its prefills reuse their scratch too; the set comes from its model's ScratchPool and goes back to it.
#pragma once

#include <array>
#include <cstddef>
#include <limits>
#include <memory>
#include <mutex>
#include <vector>

#include "../core/aligned_buffer.h"
#include "../core/workspace.h"

namespace dynamoe::cpu {

// One per buffer a single call needs at the same time.
enum class ScratchSlot { Activations, RouterLogits, Intermediate, RowOutput, StagedRows, GateUpRaw, Count };

constexpr size_t kRetainedScratchBytes = size_t{4} << 20;

class ScratchBuffers final : public Workspace {
 public:
  explicit ScratchBuffers(size_t retainedBytes = std::numeric_limits<size_t>::max()) : retainedBytes_(retainedBytes) {}

  // `bytes` of 64-byte-aligned, uninitialised scratch for `slot`, valid until the next request for the same slot or
  // until `oversize` goes (when the request was over the retained limit).
  void* get(ScratchSlot slot, size_t bytes, AlignedBuffer& oversize);
  // The same for a set with no retained limit (a session's), which keeps every size itself.
  void* get(ScratchSlot slot, size_t bytes);

 private:
  size_t retainedBytes_;
  std::array<AlignedBuffer, static_cast<size_t>(ScratchSlot::Count)> buffers_;
};

// The CPU's workspaces are scratch sets; throws ERR_DYNAMOE_INTERNAL for another backend's.
ScratchBuffers& workspaceScratch(Workspace& workspace);

// The calling thread's buffers (retaining at most kRetainedScratchBytes per slot).
ScratchBuffers& threadScratchBuffers();

// A model's session scratch, handed from sequences that ended to new ones: a server that opens a session per request
// would otherwise fault in fresh pages for every prefill (a 256-token prefill in a new session ran 3-8% slower than
// in a reset one, medians). Keeps at most kIdleScratchSets sets that no sequence holds; thread-safe.
class ScratchPool {
 public:
  static constexpr size_t kIdleScratchSets = 2;

  // An idle set, or a new empty one.
  std::unique_ptr<ScratchBuffers> take();
  // Keeps `set` for a later take() while fewer than kIdleScratchSets are idle and the pool is open; frees it otherwise.
  void give(std::unique_ptr<ScratchBuffers> set);
  // Frees the idle sets and every set given back from now on (the model was disposed).
  void close();

 private:
  std::mutex mutex_;
  bool closed_ = false;
  std::vector<std::unique_ptr<ScratchBuffers>> idle_;
};

}  // namespace dynamoe::cpu

// Thread pool check, built with ThreadSanitizer: resizes interleaved with jobs (what setThreads does between
// forwards), jobs from two callers at once, and exceptions from items. Every item must run exactly once, every job
// must return, and TSan must see no data race. A watchdog turns a deadlock into a failure instead of a hang.
// Usage: thread_pool_check [rounds]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <thread>
#include <vector>

#include "../../native/cpu/thread_pool.h"

using namespace dynamoe;

namespace {

std::atomic<long> progress{0};

void fail(const char* what, long round) {
  std::fprintf(stderr, "thread pool check: FAILED: %s (round %ld)\n", what, round);
  std::_Exit(1);
}

// One job of `items` items; checks each ran exactly once.
void runJob(ThreadPool& pool, size_t items, long round) {
  std::vector<std::atomic<int>> runs(items);
  pool.parallelFor(items, [&](size_t i) { runs[i].fetch_add(1, std::memory_order_relaxed); });
  for (size_t i = 0; i < items; ++i) {
    if (runs[i].load() != 1) fail("an item did not run exactly once", round);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const long rounds = argc > 1 ? std::atol(argv[1]) : 2000;
  const long total = rounds * 3 + 100;
  std::thread watchdog([total] {
    long last = -1;
    auto lastChange = std::chrono::steady_clock::now();
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      const long now = progress.load();
      if (now >= total) return;
      if (now != last) {
        last = now;
        lastChange = std::chrono::steady_clock::now();
      } else if (std::chrono::steady_clock::now() - lastChange > std::chrono::seconds(10)) {
        fail("no progress for 10 s: deadlock", now);
      }
    }
  });

  ThreadPool pool(2);
  // 1. A job right after every resize: new workers must not take the finished job for a new one.
  for (long round = 0; round < rounds; ++round) {
    pool.resize(1 + static_cast<int>(round % 4));
    runJob(pool, 1 + static_cast<size_t>(round % 67), round);
    ++progress;
  }
  // 2. Two callers at once (as two libuv threads running forwards), one of them resizing now and then.
  pool.resize(3);
  std::thread other([&pool, rounds] {
    for (long round = 0; round < rounds; ++round) {
      runJob(pool, 33, round);
      ++progress;
    }
  });
  for (long round = 0; round < rounds; ++round) {
    if (round % 50 == 0) pool.resize(2 + static_cast<int>(round / 50 % 2));
    runJob(pool, 17, round);
    ++progress;
  }
  other.join();
  // 3. The first exception of a job reaches its caller, and the pool keeps working afterwards.
  for (long round = 0; round < 100; ++round) {
    bool caught = false;
    try {
      pool.parallelFor(40, [](size_t i) {
        if (i % 7 == 3) throw std::runtime_error("item failed");
      });
    } catch (const std::runtime_error&) {
      caught = true;
    }
    if (!caught) fail("an item's exception did not reach the caller", round);
    runJob(pool, 40, round);
    ++progress;
  }
  watchdog.join();
  std::printf("thread pool check: %ld rounds of resize + job, %ld jobs from two callers, 100 failing jobs: ok\n",
              rounds, 2 * rounds);
  return 0;
}

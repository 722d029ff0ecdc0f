#include "thread_pool.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace dynamoe {

namespace {

// How long a thread polls for the next job (a worker) or for the workers to finish (the caller) before it sleeps
// on a condition variable. A decode step runs one or more short jobs per op of every layer, and waking a sleeping
// thread is slow on a VM (an idle vCPU halts; a trivial async call took 82 us at the median, 15 us at best).
constexpr auto kSpin = std::chrono::microseconds(100);

// Tells the core this thread is polling (frees resources for its sibling, saves power).
inline void cpuRelax() {
#if defined(__x86_64__) || defined(_M_X64)
  _mm_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

// Polls until done() or kSpin has passed; returns done()'s last value.
template <class Done>
bool spinUntil(Done&& done) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (int polls = 0;; ++polls) {
    if (done()) return true;
    // The clock is read every 64 polls: it costs more than a poll.
    if (polls % 64 == 63 && std::chrono::steady_clock::now() >= deadline) return done();
    cpuRelax();
  }
}

}  // namespace

ThreadPool::ThreadPool(int threads) { startWorkers(threads); }

ThreadPool::~ThreadPool() { stopWorkers(); }

int ThreadPool::threads() const { return static_cast<int>(workers_.size()) + 1; }

void ThreadPool::resize(int threads) {
  std::lock_guard<std::mutex> job(jobMutex_);
  stopWorkers();
  startWorkers(threads);
}

void ThreadPool::startWorkers(int threads) {
  stopping_.store(false, std::memory_order_relaxed);
  const int workerCount = std::max(1, threads) - 1;  // the calling thread is the last one
  // A polling thread on a core that another of the job's threads needs would only delay it.
  spin_ = static_cast<unsigned>(workerCount + 1) <= std::thread::hardware_concurrency();
  // New workers start having seen the last job: a worker that took the finished job's generation for a new one
  // would run its stale items and count itself done twice (a job returning early, then one waiting forever).
  const uint64_t finished = generation_.load(std::memory_order_relaxed);
  for (int i = 0; i < workerCount; ++i) workers_.emplace_back([this, finished] { workerLoop(finished); });
}

void ThreadPool::stopWorkers() {
  {
    std::lock_guard<std::mutex> lock(stateMutex_);
    stopping_.store(true, std::memory_order_release);
  }
  wake_.notify_all();
  for (auto& worker : workers_) worker.join();
  workers_.clear();
}

void ThreadPool::runItems() {
  for (;;) {
    const size_t item = nextItem_.fetch_add(1, std::memory_order_relaxed);
    if (item >= jobItems_) return;
    try {
      (*job_)(item);
    } catch (...) {
      std::lock_guard<std::mutex> lock(stateMutex_);
      if (!firstError_) firstError_ = std::current_exception();
      nextItem_.store(jobItems_, std::memory_order_relaxed);  // stop handing out items
    }
  }
}

void ThreadPool::workerLoop(uint64_t seen) {
  auto woken = [&] {
    return stopping_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen;
  };
  for (;;) {
    if (!(spin_ && spinUntil(woken))) {
      std::unique_lock<std::mutex> lock(stateMutex_);
      wake_.wait(lock, woken);
    }
    if (stopping_.load(std::memory_order_acquire)) return;
    seen = generation_.load(std::memory_order_acquire);
    runItems();
    // The last worker out tells a caller that stopped spinning; under the mutex, so the caller is either still
    // before its check of busyWorkers_ or already waiting.
    if (busyWorkers_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(stateMutex_);
      done_.notify_all();
    }
  }
}

void ThreadPool::parallelFor(size_t items, const std::function<void(size_t)>& fn) {
  if (items == 0) return;
  std::lock_guard<std::mutex> job(jobMutex_);
  if (workers_.empty() || items == 1) {
    for (size_t i = 0; i < items; ++i) fn(i);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(stateMutex_);
    job_ = &fn;
    jobItems_ = items;
    nextItem_.store(0, std::memory_order_relaxed);
    firstError_ = nullptr;
    busyWorkers_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);  // publishes the job to spinning workers
  }
  wake_.notify_all();
  runItems();
  auto finished = [&] { return busyWorkers_.load(std::memory_order_acquire) == 0; };
  if (spin_) spinUntil(finished);
  std::exception_ptr error;
  {
    std::unique_lock<std::mutex> lock(stateMutex_);
    done_.wait(lock, finished);
    job_ = nullptr;
    error = firstError_;
    firstError_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

int defaultThreadCount() {
  // DYNAMOE_THREADS overrides the core count (e.g. to leave cores to other work in a server).
  if (const char* env = std::getenv("DYNAMOE_THREADS")) {
    const int threads = std::atoi(env);
    if (threads >= 1 && threads <= 1024) return threads;
  }
  const unsigned cores = std::thread::hardware_concurrency();
  return cores == 0 ? 1 : static_cast<int>(cores);
}

ThreadPool& cpuThreadPool() {
  static ThreadPool pool(defaultThreadCount());
  return pool;
}

}  // namespace dynamoe

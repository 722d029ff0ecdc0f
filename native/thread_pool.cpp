#include "thread_pool.h"

#include <algorithm>
#include <cstdlib>

namespace dynamoe {

ThreadPool::ThreadPool(int threads) { startWorkers(threads); }

ThreadPool::~ThreadPool() { stopWorkers(); }

int ThreadPool::threads() const { return static_cast<int>(workers_.size()) + 1; }

void ThreadPool::resize(int threads) {
  std::lock_guard<std::mutex> job(jobMutex_);
  stopWorkers();
  startWorkers(threads);
}

void ThreadPool::startWorkers(int threads) {
  stopping_ = false;
  const int workerCount = std::max(1, threads) - 1;  // the calling thread is the last one
  // New workers start having seen the last job: a worker that took the finished job's generation for a new one
  // would run its stale items and count itself done twice (a job returning early, then one waiting forever).
  const uint64_t finished = generation_;
  for (int i = 0; i < workerCount; ++i) workers_.emplace_back([this, finished] { workerLoop(finished); });
}

void ThreadPool::stopWorkers() {
  {
    std::lock_guard<std::mutex> lock(stateMutex_);
    stopping_ = true;
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
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(stateMutex_);
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
    }
    runItems();
    {
      std::lock_guard<std::mutex> lock(stateMutex_);
      if (--busyWorkers_ == 0) done_.notify_all();
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
    busyWorkers_ = static_cast<int>(workers_.size());
    ++generation_;
  }
  wake_.notify_all();
  runItems();
  std::exception_ptr error;
  {
    std::unique_lock<std::mutex> lock(stateMutex_);
    done_.wait(lock, [&] { return busyWorkers_ == 0; });
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

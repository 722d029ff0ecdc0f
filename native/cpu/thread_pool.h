// The CPU thread pool: a fixed set of workers that, with the calling thread, run the items of one parallel job.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace dynamoe {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Threads that take part in a job, the caller included.
  int threads() const;
  // Replaces the workers; waits for a running job to finish first.
  void resize(int threads);
  // Runs fn(i) for every i in [0, items) and returns when all are done. Jobs from different callers run one after
  // another, so each job has every thread. The first exception thrown by an item is rethrown here.
  void parallelFor(size_t items, const std::function<void(size_t)>& fn);

 private:
  void startWorkers(int threads);
  void stopWorkers();
  void workerLoop(uint64_t seen);  // seen: the last job generation this worker has taken part in
  void runItems();

  std::mutex jobMutex_;  // one job at a time
  std::mutex stateMutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::vector<std::thread> workers_;
  // Atomic so that polling threads (see kSpin in thread_pool.cpp) can read them without stateMutex_. stopping_ and
  // generation_ are written under it, generation_ last (release), after the job it announces; busyWorkers_ is
  // counted down by the workers without it.
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> busyWorkers_{0};
  bool spin_ = false;  // whether threads poll before they sleep: only with no more threads than cores
  const std::function<void(size_t)>* job_ = nullptr;
  size_t jobItems_ = 0;
  std::atomic<size_t> nextItem_{0};
  std::exception_ptr firstError_;
};

// The process-wide pool used by every CPU kernel; sized to the machine's cores until setThreads() changes it.
ThreadPool& cpuThreadPool();
int defaultThreadCount();

}  // namespace dynamoe

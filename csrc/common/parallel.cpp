#include "common/parallel.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace fer_edge {
namespace {

// Read once per process: std::thread::hardware_concurrency() reads /sys on Linux (~13 us), and
// every kernel call paid it through parallel_for, which made a 128-token gating call cost 17 us
// instead of ~5 (LEAF calls it a few times per step, issue 17).
int default_threads() {
  static const int n = [] {
    if (const char* env = std::getenv("FER_EDGE_NUM_THREADS")) {
      int v = std::atoi(env);
      if (v > 0) return std::min(v, kMaxThreads);
    }
    unsigned hw = std::thread::hardware_concurrency();
    return hw ? std::min(static_cast<int>(hw), kMaxThreads) : 1;
  }();
  return n;
}

std::atomic<int> g_threads{0};

}  // namespace

int get_num_threads() {
  int n = g_threads.load();
  return n > 0 ? n : default_threads();
}

void set_num_threads(int n) { g_threads.store(n > 0 ? std::min(n, kMaxThreads) : 0); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t most = (n + grain - 1) / grain;  // work for one chunk: no thread count needed
  const int64_t chunks = most <= 1 ? 1 : std::min<int64_t>(get_num_threads(), most);
  if (chunks <= 1) {
    fn(0, n);
    return;
  }
  std::exception_ptr error;
  std::mutex error_mutex;
  auto run = [&](int64_t c) {
    int64_t begin = n * c / chunks, end = n * (c + 1) / chunks;
    try {
      fn(begin, end);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  };
  std::vector<std::thread> workers;
  int64_t spawned = 1;  // chunks [1, spawned) run on workers
  try {
    workers.reserve(chunks - 1);
    for (int64_t c = 1; c < chunks; ++c) {
      workers.emplace_back(run, c);
      spawned = c + 1;
    }
  } catch (const std::exception&) {
    // The OS refused a thread (limits, memory): the remaining chunks run on this thread rather
    // than std::terminate taking the process down.
  }
  run(0);
  for (int64_t c = spawned; c < chunks; ++c) run(c);
  for (auto& t : workers) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace fer_edge

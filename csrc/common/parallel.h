// A small fork-join helper over std::thread. We avoid OpenMP's runtime on purpose: torch
// bundles its own libgomp, and a second one in the same process oversubscribes cores and
// hangs in forked DataLoader workers. Threads are started per call (~10 us each), so callers
// pass a grain size that keeps that cost well below the work.
#pragma once
#include <cstdint>
#include <functional>

namespace fer_edge {

// More workers than this never help these kernels, and asking the OS for tens of thousands of
// threads fails: set_num_threads and FER_EDGE_NUM_THREADS are capped here.
constexpr int kMaxThreads = 256;

int get_num_threads();
void set_num_threads(int n);  // n <= 0 restores the default (FER_EDGE_NUM_THREADS or all cores)

// Calls fn(begin, end) over [0, n) split into at most get_num_threads() contiguous chunks of at
// least `grain` items. Exceptions from workers are rethrown in the caller.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace fer_edge

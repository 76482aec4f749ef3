// CUDA error handling: every failure becomes a C++ exception (RuntimeError in Python).
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace fer_edge {

inline void cuda_check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("fer_edge CUDA error in ") + what + ": " +
                             cudaGetErrorString(err));
  }
}

// Launches go on the caller's stream (torch's current stream), on the buffer's device.
struct DeviceGuard {
  int previous = -1;
  explicit DeviceGuard(int device) {
    cuda_check(cudaGetDevice(&previous), "cudaGetDevice");
    if (previous != device) cuda_check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceGuard() {
    int now = -1;
    if (cudaGetDevice(&now) == cudaSuccess && now != previous) cudaSetDevice(previous);
  }
};

inline int blocks_for(long long n, int threads, int cap = 65535 * 32) {
  long long b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  return static_cast<int>(b < cap ? b : cap);
}

}  // namespace fer_edge

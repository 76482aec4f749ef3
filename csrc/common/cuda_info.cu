#include <cuda_runtime.h>

#include <string>

namespace fer_edge {

// 0 when there is no driver or no device: the module must import on GPU-less build machines.
int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

int cuda_runtime_version() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return v;
}

}  // namespace fer_edge

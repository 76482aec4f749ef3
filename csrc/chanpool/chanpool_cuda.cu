#include <vector>

#include "chanpool/chanpool.h"
#include "common/cuda_check.h"

namespace fer_edge {
namespace {

constexpr int kMaxGroups = 256;

// Group boundaries by value (kernel parameter space): the host validated them already.
struct Groups {
  int offsets[kMaxGroups + 1];
  int L;
};

template <typename T>
__global__ void chanpool_forward_kernel(const T* __restrict__ x, const uint8_t* __restrict__ mask,
                                        int mask_stride, T* __restrict__ out,
                                        int32_t* __restrict__ argmax, int B, int C, int S,
                                        Groups g) {
  const long long total = 1LL * B * g.L * S;
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < total;
       i += 1LL * gridDim.x * blockDim.x) {
    const int s = i % S, l = (i / S) % g.L, b = i / (1LL * S * g.L);
    const T* xb = x + 1LL * b * C * S;
    const uint8_t* m = mask ? mask + 1LL * b * mask_stride : nullptr;
    T best = -INFINITY;
    int arg = -1;
    for (int c = g.offsets[l]; c < g.offsets[l + 1]; ++c) {
      if (m && m[c]) continue;
      const T v = xb[1LL * c * S + s];
      if (arg < 0 || v > best) {
        best = v;
        arg = c;
      }
    }
    out[i] = best;
    argmax[i] = arg;
  }
}

// One thread per input element: each reads its group's arg-max and writes its own gradient,
// so zero-filling and routing are one coalesced launch.
template <typename T>
__global__ void chanpool_backward_kernel(const T* __restrict__ grad_out,
                                         const int32_t* __restrict__ argmax, T* __restrict__ grad_x,
                                         int B, int C, int S, Groups g) {
  const long long total = 1LL * B * C * S;
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < total;
       i += 1LL * gridDim.x * blockDim.x) {
    const int s = i % S, c = (i / S) % C, b = i / (1LL * S * C);
    int l = 0;
    while (g.offsets[l + 1] <= c) ++l;
    const long long o = (1LL * b * g.L + l) * S + s;
    grad_x[i] = argmax[o] == c ? grad_out[o] : T(0);
  }
}

Groups make_groups(const Buffer& offsets) {
  const int64_t L = offsets.dim(0) - 1;
  if (L > kMaxGroups) fail("chanpool on CUDA supports at most 256 groups, got " + std::to_string(L));
  Groups g{};
  g.L = static_cast<int>(L);
  for (int64_t l = 0; l <= L; ++l) g.offsets[l] = static_cast<int>(offsets.data<int64_t>()[l]);
  return g;
}

}  // namespace

void chanpool_forward_cuda(const Buffer& x, const Buffer& offsets, const Buffer& drop,
                           const Buffer& out, const Buffer& argmax, std::uintptr_t stream) {
  if (x.device < 0) fail("chanpool_forward_cuda: x must be on a CUDA device");
  chanpool_check(x, offsets, drop, out, argmax, x.device);
  if (x.numel() == 0) return;
  const Groups g = make_groups(offsets);
  DeviceGuard guard(x.device);
  const int B = x.dim(0), C = x.dim(1), S = x.dim(2);
  const uint8_t* mask = drop.shape.empty() ? nullptr : drop.data<uint8_t>();
  const int mask_stride = drop.shape.size() == 2 ? C : 0;
  const long long total = 1LL * B * g.L * S;
  auto s = reinterpret_cast<cudaStream_t>(stream);
  if (x.dtype == DType::f32) {
    chanpool_forward_kernel<float><<<blocks_for(total, 256), 256, 0, s>>>(
        x.data<float>(), mask, mask_stride, out.data<float>(), argmax.data<int32_t>(), B, C, S, g);
  } else {
    chanpool_forward_kernel<double><<<blocks_for(total, 256), 256, 0, s>>>(
        x.data<double>(), mask, mask_stride, out.data<double>(), argmax.data<int32_t>(), B, C, S, g);
  }
  cuda_check(cudaGetLastError(), "chanpool forward launch");
}

void chanpool_backward_cuda(const Buffer& grad_out, const Buffer& argmax, const Buffer& offsets,
                            const Buffer& grad_x, std::uintptr_t stream) {
  if (grad_x.device < 0) fail("chanpool_backward_cuda: tensors must be on a CUDA device");
  chanpool_backward_check(grad_out, argmax, offsets, grad_x, grad_x.device);
  if (grad_x.numel() == 0) return;
  const Groups g = make_groups(offsets);
  DeviceGuard guard(grad_x.device);
  const int B = grad_x.dim(0), C = grad_x.dim(1), S = grad_x.dim(2);
  const long long total = 1LL * B * C * S;
  auto s = reinterpret_cast<cudaStream_t>(stream);
  if (grad_x.dtype == DType::f32) {
    chanpool_backward_kernel<float><<<blocks_for(total, 256), 256, 0, s>>>(
        grad_out.data<float>(), argmax.data<int32_t>(), grad_x.data<float>(), B, C, S, g);
  } else {
    chanpool_backward_kernel<double><<<blocks_for(total, 256), 256, 0, s>>>(
        grad_out.data<double>(), argmax.data<int32_t>(), grad_x.data<double>(), B, C, S, g);
  }
  cuda_check(cudaGetLastError(), "chanpool backward launch");
}

}  // namespace fer_edge

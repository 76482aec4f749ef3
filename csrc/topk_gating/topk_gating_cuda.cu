#include "common/cuda_check.h"
#include "topk_gating/topk_gating.h"

namespace fer_edge {
namespace {

// One thread per token: at E <= 64 and k <= 4 the row lives in L1 and the call is
// launch-bound for any realistic token count.
template <typename S>
__global__ void gating_forward_kernel(const S* __restrict__ z, S* __restrict__ w,
                                      int64_t* __restrict__ ind, S* __restrict__ probs, long long T,
                                      int E, int k) {
  for (long long t = blockIdx.x * 1LL * blockDim.x + threadIdx.x; t < T;
       t += 1LL * gridDim.x * blockDim.x) {
    const S* row = z + t * E;
    int idx[kGatingMaxK];
    S val[kGatingMaxK];
    for (int j = 0; j < k; ++j) {
      int arg = -1;
      S best = 0;
      for (int e = 0; e < E; ++e) {
        bool taken = false;
        for (int jj = 0; jj < j; ++jj) taken |= idx[jj] == e;
        const S v = row[e];
        if (!taken && (arg < 0 || v > best)) {
          best = v;
          arg = e;
        }
      }
      idx[j] = arg;
      val[j] = best;
    }
    const S mx = val[0];
    S sum = 0;
    for (int j = 0; j < k; ++j) {
      val[j] = exp(val[j] - mx);
      sum += val[j];
    }
    for (int j = 0; j < k; ++j) {
      w[t * k + j] = val[j] / sum;
      ind[t * k + j] = idx[j];
    }
    if (probs) {
      S tot = 0;
      for (int e = 0; e < E; ++e) tot += exp(row[e] - mx);
      const S inv = S(1) / tot;
      for (int e = 0; e < E; ++e) probs[t * E + e] = exp(row[e] - mx) * inv;
    }
  }
}

template <typename S>
__global__ void gating_backward_kernel(const S* __restrict__ gw, const S* __restrict__ w,
                                       const int64_t* __restrict__ ind, const S* __restrict__ gp,
                                       const S* __restrict__ p, S* __restrict__ gl, long long T,
                                       int E, int k) {
  for (long long t = blockIdx.x * 1LL * blockDim.x + threadIdx.x; t < T;
       t += 1LL * gridDim.x * blockDim.x) {
    S* g = gl + t * E;
    if (p) {
      S dot = 0;
      for (int e = 0; e < E; ++e) dot += gp[t * E + e] * p[t * E + e];
      for (int e = 0; e < E; ++e) g[e] = p[t * E + e] * (gp[t * E + e] - dot);
    } else {
      for (int e = 0; e < E; ++e) g[e] = 0;
    }
    S dot = 0;
    for (int j = 0; j < k; ++j) dot += gw[t * k + j] * w[t * k + j];
    for (int j = 0; j < k; ++j) {
      const int64_t e = ind[t * k + j];
      if (e >= 0 && e < E) g[e] += w[t * k + j] * (gw[t * k + j] - dot);
    }
  }
}

}  // namespace

void topk_gating_forward_cuda(const Buffer& logits, int64_t k, const Buffer& weights,
                              const Buffer& indices, const Buffer& probs, std::uintptr_t stream) {
  if (logits.device < 0) fail("topk_gating_forward_cuda: logits must be on a CUDA device");
  topk_gating_check(logits, k, weights, indices, probs, logits.device);
  const long long T = logits.dim(0);
  const int E = logits.dim(1);
  if (T == 0) return;
  DeviceGuard guard(logits.device);
  auto s = reinterpret_cast<cudaStream_t>(stream);
  const int threads = 256;
  if (logits.dtype == DType::f32) {
    gating_forward_kernel<float><<<blocks_for(T, threads), threads, 0, s>>>(
        logits.data<float>(), weights.data<float>(), indices.data<int64_t>(),
        present(probs) ? probs.data<float>() : nullptr, T, E, static_cast<int>(k));
  } else {
    gating_forward_kernel<double><<<blocks_for(T, threads), threads, 0, s>>>(
        logits.data<double>(), weights.data<double>(), indices.data<int64_t>(),
        present(probs) ? probs.data<double>() : nullptr, T, E, static_cast<int>(k));
  }
  cuda_check(cudaGetLastError(), "topk_gating forward launch");
}

void topk_gating_backward_cuda(const Buffer& grad_weights, const Buffer& weights,
                               const Buffer& indices, const Buffer& grad_probs, const Buffer& probs,
                               const Buffer& grad_logits, std::uintptr_t stream) {
  if (grad_logits.device < 0) fail("topk_gating_backward_cuda: tensors must be on a CUDA device");
  topk_gating_backward_check(grad_weights, weights, indices, grad_probs, probs, grad_logits,
                             grad_logits.device);
  const long long T = grad_logits.dim(0);
  const int E = grad_logits.dim(1), k = weights.dim(1);
  if (T == 0) return;
  DeviceGuard guard(grad_logits.device);
  auto s = reinterpret_cast<cudaStream_t>(stream);
  const int threads = 256;
  const bool wp = present(probs);
  if (grad_logits.dtype == DType::f32) {
    gating_backward_kernel<float><<<blocks_for(T, threads), threads, 0, s>>>(
        grad_weights.data<float>(), weights.data<float>(), indices.data<int64_t>(),
        wp ? grad_probs.data<float>() : nullptr, wp ? probs.data<float>() : nullptr,
        grad_logits.data<float>(), T, E, k);
  } else {
    gating_backward_kernel<double><<<blocks_for(T, threads), threads, 0, s>>>(
        grad_weights.data<double>(), weights.data<double>(), indices.data<int64_t>(),
        wp ? grad_probs.data<double>() : nullptr, wp ? probs.data<double>() : nullptr,
        grad_logits.data<double>(), T, E, k);
  }
  cuda_check(cudaGetLastError(), "topk_gating backward launch");
}

}  // namespace fer_edge

#include "common/cuda_check.h"
#include "kmeans/kmeans.h"

namespace fer_edge {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxSharedFloats = 48 * 1024 / 4 - 64;  // default dynamic smem budget

__device__ float dot_rows(const float* a, const float* b, int D) {
  float s = 0.f;
  for (int d = 0; d < D; ++d) s += a[d] * b[d];
  return s;
}

// Labels of all N points of one problem against the K centroids in shared memory.
__device__ void assign_points(const float* xn, int N, int D, const float* cent, int K, int64_t* lab,
                              float* best_out) {
  for (int i = threadIdx.x; i < N; i += blockDim.x) {
    const float* r = xn + 1LL * i * D;
    float best = dot_rows(r, cent, D);
    int arg = 0;
    for (int c = 1; c < K; ++c) {
      float v = dot_rows(r, cent + c * D, D);
      if (v > best) {  // strict: ties keep the lowest index
        best = v;
        arg = c;
      }
    }
    lab[i] = arg;
    if (best_out) best_out[i] = best;
  }
}

__device__ void normalise_shared_rows(float* c, int K, int D) {
  for (int k = threadIdx.x; k < K; k += blockDim.x) {
    float sq = 0.f;
    for (int d = 0; d < D; ++d) sq += c[k * D + d] * c[k * D + d];
    const float inv = 1.f / fmaxf(sqrtf(sq), 1e-12f);
    for (int d = 0; d < D; ++d) c[k * D + d] *= inv;
  }
}

// One block per problem: normalise into the workspace, initialise, run the Lloyd steps with
// centroids in shared memory. Sums run sequentially over points per (cluster, dim), so the
// result is bitwise reproducible run to run.
__global__ void kmeans_kernel(const float* __restrict__ x, const float* __restrict__ init,
                              float* __restrict__ cent_out, int64_t* __restrict__ labels,
                              float* __restrict__ ws, int P, int N, int D, int K, int iters,
                              int init_mode, unsigned long long seed) {
  extern __shared__ float sm[];
  float* cent = sm;
  float* sums = sm + K * D;
  int* counts = reinterpret_cast<int*>(sums + K * D);
  __shared__ int s_idx;
  for (int p = blockIdx.x; p < P; p += gridDim.x) {
    const float* xp = x + 1LL * p * N * D;
    float* xn = ws + 1LL * p * N * (D + 1);
    float* dist = xn + 1LL * N * D;
    int64_t* lab = labels + 1LL * p * N;
    for (int i = threadIdx.x; i < N; i += blockDim.x) {
      const float* r = xp + 1LL * i * D;
      float sq = 0.f;
      for (int d = 0; d < D; ++d) sq += r[d] * r[d];
      const float inv = 1.f / fmaxf(sqrtf(sq), 1e-12f);
      for (int d = 0; d < D; ++d) xn[1LL * i * D + d] = r[d] * inv;
    }
    __syncthreads();
    if (init_mode == static_cast<int>(KmeansInit::kGiven)) {
      for (int e = threadIdx.x; e < K * D; e += blockDim.x) cent[e] = init[1LL * p * K * D + e];
      __syncthreads();
      normalise_shared_rows(cent, K, D);
    } else if (init_mode == static_cast<int>(KmeansInit::kFirst)) {
      for (int e = threadIdx.x; e < K * D; e += blockDim.x) {
        cent[e] = xn[1LL * ((e / D) % N) * D + e % D];
      }
    } else {
      if (threadIdx.x == 0) {
        int idx = static_cast<int>(uniform_draw(seed, p, 0) * N);
        s_idx = idx < N - 1 ? idx : N - 1;
      }
      __syncthreads();
      for (int c = 0; c < K; ++c) {
        if (c > 0) {
          if (threadIdx.x == 0) {
            double total = 0.0;
            for (int i = 0; i < N; ++i) total += static_cast<double>(dist[i]) * dist[i];
            int idx = -1;
            if (total > 0.0) {
              const double target = uniform_draw(seed, p, c) * total;
              double run = 0.0;
              int last_positive = 0;
              for (int i = 0; i < N; ++i) {
                const double w = static_cast<double>(dist[i]) * dist[i];
                if (w > 0.0) last_positive = i;
                run += w;
                if (run > target) {
                  idx = i;
                  break;
                }
              }
              if (idx < 0) idx = last_positive;
            } else {
              idx = c % N;
            }
            s_idx = idx;
          }
          __syncthreads();
        }
        for (int d = threadIdx.x; d < D; d += blockDim.x) cent[c * D + d] = xn[1LL * s_idx * D + d];
        __syncthreads();
        for (int i = threadIdx.x; i < N; i += blockDim.x) {
          float dd = fmaxf(0.f, 1.f - dot_rows(xn + 1LL * i * D, cent + c * D, D));
          dist[i] = c == 0 ? dd : fminf(dist[i], dd);
        }
        __syncthreads();
      }
    }
    __syncthreads();
    for (int it = 0; it < iters; ++it) {
      assign_points(xn, N, D, cent, K, lab, nullptr);
      __syncthreads();
      for (int e = threadIdx.x; e < K * D; e += blockDim.x) {
        const int c = e / D, d = e % D;
        float s = 0.f;
        int n = 0;
        for (int i = 0; i < N; ++i) {
          if (lab[i] == c) {
            s += xn[1LL * i * D + d];
            ++n;
          }
        }
        sums[e] = s;
        if (d == 0) counts[c] = n;
      }
      __syncthreads();
      for (int c = threadIdx.x; c < K; c += blockDim.x) {
        if (counts[c] == 0) continue;  // empty cluster keeps its centroid
        float sq = 0.f;
        for (int d = 0; d < D; ++d) sq += sums[c * D + d] * sums[c * D + d];
        if (sq <= 0.f) continue;
        const float inv = 1.f / sqrtf(sq);
        for (int d = 0; d < D; ++d) cent[c * D + d] = sums[c * D + d] * inv;
      }
      __syncthreads();
    }
    assign_points(xn, N, D, cent, K, lab, nullptr);
    for (int e = threadIdx.x; e < K * D; e += blockDim.x) cent_out[1LL * p * K * D + e] = cent[e];
    __syncthreads();
  }
}

__global__ void assign_kernel(const float* __restrict__ y, const float* __restrict__ centroids,
                              int64_t* __restrict__ labels, float* __restrict__ sim, int P, int M,
                              int D, int K) {
  extern __shared__ float cent[];
  for (int p = blockIdx.x; p < P; p += gridDim.x) {
    for (int e = threadIdx.x; e < K * D; e += blockDim.x) cent[e] = centroids[1LL * p * K * D + e];
    __syncthreads();
    normalise_shared_rows(cent, K, D);
    __syncthreads();
    for (int i = threadIdx.x; i < M; i += blockDim.x) {
      const float* r = y + (1LL * p * M + i) * D;
      float sq = 0.f;
      for (int d = 0; d < D; ++d) sq += r[d] * r[d];
      const float inv = 1.f / fmaxf(sqrtf(sq), 1e-12f);
      float best = -3.f;
      int arg = 0;
      for (int c = 0; c < K; ++c) {
        float v = dot_rows(r, cent + c * D, D) * inv;
        if (c == 0 || v > best) {
          best = v;
          arg = c;
        }
      }
      labels[1LL * p * M + i] = arg;
      sim[1LL * p * M + i] = best;
    }
    __syncthreads();
  }
}

}  // namespace

void kmeans_cuda(const Buffer& x, const Buffer& init_centroids, const Buffer& centroids,
                 const Buffer& labels, const Buffer& workspace, const KmeansParams& p,
                 std::uintptr_t stream) {
  if (x.device < 0) fail("kmeans_cuda: x must be on a CUDA device");
  kmeans_check(x, init_centroids, centroids, labels, p, x.device);
  const int64_t P = x.dim(0), N = x.dim(1), D = x.dim(2), K = p.k;
  check_buffer(workspace, "workspace", {P, N, D + 1}, {DType::f32}, x.device);
  if (2 * K * D + K > kMaxSharedFloats) {
    fail("kmeans on CUDA keeps centroids in shared memory: k*D must be <= " +
         std::to_string((kMaxSharedFloats - K) / 2) + ", got k=" + std::to_string(K) +
         ", D=" + std::to_string(D));
  }
  if (P == 0) return;
  DeviceGuard guard(x.device);
  const size_t smem = (2 * K * D + K) * sizeof(float);
  const int blocks = static_cast<int>(P < 65535 ? P : 65535);
  kmeans_kernel<<<blocks, kThreads, smem, reinterpret_cast<cudaStream_t>(stream)>>>(
      x.data<float>(), p.init == KmeansInit::kGiven ? init_centroids.data<float>() : nullptr,
      centroids.data<float>(), labels.data<int64_t>(), workspace.data<float>(), P, N, D, K,
      p.iters, static_cast<int>(p.init), static_cast<unsigned long long>(p.seed));
  cuda_check(cudaGetLastError(), "kmeans kernel launch");
}

void assign_cuda(const Buffer& y, const Buffer& centroids, const Buffer& labels, const Buffer& sim,
                 std::uintptr_t stream) {
  if (y.device < 0) fail("assign_cuda: y must be on a CUDA device");
  assign_check(y, centroids, labels, sim, y.device);
  const int64_t P = y.dim(0), M = y.dim(1), D = y.dim(2), K = centroids.dim(1);
  if (K * D > kMaxSharedFloats) {
    fail("assign on CUDA keeps centroids in shared memory: k*D must be <= " +
         std::to_string(kMaxSharedFloats));
  }
  if (P == 0 || M == 0) return;
  DeviceGuard guard(y.device);
  const int blocks = static_cast<int>(P < 65535 ? P : 65535);
  assign_kernel<<<blocks, kThreads, K * D * sizeof(float), reinterpret_cast<cudaStream_t>(stream)>>>(
      y.data<float>(), centroids.data<float>(), labels.data<int64_t>(), sim.data<float>(), P, M, D,
      K);
  cuda_check(cudaGetLastError(), "assign kernel launch");
}

}  // namespace fer_edge

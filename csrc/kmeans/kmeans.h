// Many independent small spherical (cosine) k-means problems at once.
//   kmeans: x [P, N, D] f32 -> centroids [P, K, D] f32 (unit), labels [P, N] int64
//   assign: y [P, M, D] f32, centroids [P, K, D] -> labels [P, M] int64, sim [P, M] f32
// Rows are L2-normalised first (x / max(|x|, 1e-12)). Each of `iters` Lloyd steps assigns every
// point to its most similar centroid (ties: lowest index) and sets each centroid to its
// members' normalised sum; an empty cluster, or one whose members sum to zero, keeps its
// previous centroid (deterministic). The returned labels are the assignment to the returned
// centroids.
// Init: kFirst = points 0..K-1 (index c mod N when N < K); kPlusPlus = k-means++ with cosine
// distance 1 - cos and D^2 sampling driven by uniform_draw(seed, problem, draw) below, so CPU,
// CUDA and the PyTorch reference choose identical seeds; kGiven = the caller's centroids.
#pragma once
#include <cstdint>

#include "common/buffer.h"

#if defined(__CUDACC__)
#define FER_HD __host__ __device__ __forceinline__
#else
#define FER_HD inline
#endif

namespace fer_edge {

enum class KmeansInit : int { kFirst = 0, kPlusPlus = 1, kGiven = 2 };

struct KmeansParams {
  int64_t k = 4;
  int64_t iters = 10;
  KmeansInit init = KmeansInit::kPlusPlus;
  uint64_t seed = 0;
};

// lowbias32 (Chris Wellons) integer hash; chained over seed halves, problem and draw index.
FER_HD uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

// Uniform in [0, 1) for draw `draw` of problem `problem`.
FER_HD double uniform_draw(uint64_t seed, uint64_t problem, uint32_t draw) {
  uint32_t h = mix32(static_cast<uint32_t>(seed >> 32));
  h = mix32(h ^ static_cast<uint32_t>(seed));
  h = mix32(h ^ static_cast<uint32_t>(problem));
  h = mix32(h ^ draw);
  return static_cast<double>(h) * (1.0 / 4294967296.0);
}

void kmeans_check(const Buffer& x, const Buffer& init_centroids, const Buffer& centroids,
                  const Buffer& labels, const KmeansParams& p, int device);
void assign_check(const Buffer& y, const Buffer& centroids, const Buffer& labels, const Buffer& sim,
                  int device);

// Return true when an input held NaN or infinity.
bool kmeans_cpu(const Buffer& x, const Buffer& init_centroids, const Buffer& centroids,
                const Buffer& labels, const KmeansParams& p);
bool assign_cpu(const Buffer& y, const Buffer& centroids, const Buffer& labels, const Buffer& sim);

// workspace: f32 [P, N, D + 1] (normalised points and the k-means++ distances).
void kmeans_cuda(const Buffer& x, const Buffer& init_centroids, const Buffer& centroids,
                 const Buffer& labels, const Buffer& workspace, const KmeansParams& p,
                 std::uintptr_t stream);
void assign_cuda(const Buffer& y, const Buffer& centroids, const Buffer& labels, const Buffer& sim,
                 std::uintptr_t stream);

}  // namespace fer_edge

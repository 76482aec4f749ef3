#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "common/parallel.h"
#include "kmeans/kmeans.h"

namespace fer_edge {

void kmeans_check(const Buffer& x, const Buffer& init_centroids, const Buffer& centroids,
                  const Buffer& labels, const KmeansParams& p, int device) {
  check_buffer(x, "x", {-1, -1, -1}, {DType::f32}, device);
  const int64_t P = x.dim(0), N = x.dim(1), D = x.dim(2);
  if (p.k < 1) fail("k must be >= 1, got " + std::to_string(p.k));
  if (p.iters < 0) fail("iters must be >= 0, got " + std::to_string(p.iters));
  if (N < 1 || D < 1) fail("x: N and D must be >= 1, got shape " + shape_str(x.shape));
  if (p.init == KmeansInit::kGiven) {
    check_buffer(init_centroids, "init", {P, p.k, D}, {DType::f32}, device);
  }
  check_buffer(centroids, "centroids", {P, p.k, D}, {DType::f32}, device);
  check_buffer(labels, "labels", {P, N}, {DType::i64}, device);
}

void assign_check(const Buffer& y, const Buffer& centroids, const Buffer& labels, const Buffer& sim,
                  int device) {
  check_buffer(y, "y", {-1, -1, -1}, {DType::f32}, device);
  const int64_t P = y.dim(0), M = y.dim(1), D = y.dim(2);
  check_buffer(centroids, "centroids", {P, -1, D}, {DType::f32}, device);
  if (centroids.dim(1) < 1) fail("centroids: need at least one centroid, got shape " + shape_str(centroids.shape));
  check_buffer(labels, "labels", {P, M}, {DType::i64}, device);
  check_buffer(sim, "sim", {P, M}, {DType::f32}, device);
}

namespace {

bool has_nonfinite(const float* v, int64_t n) {
  bool bad = false;
#pragma omp simd reduction(| : bad)
  for (int64_t i = 0; i < n; ++i) bad |= (v[i] - v[i] != v[i] - v[i]);
  return bad;
}

// Normalised rows, transposed to [D][N] so that every inner loop runs over points.
void normalise_transpose(const float* x, int64_t N, int64_t D, float* xt) {
  for (int64_t i = 0; i < N; ++i) {
    const float* r = x + i * D;
    float sq = 0.f;
    for (int64_t d = 0; d < D; ++d) sq += r[d] * r[d];
    const float inv = 1.f / std::max(std::sqrt(sq), 1e-12f);
    for (int64_t d = 0; d < D; ++d) xt[d * N + i] = r[d] * inv;
  }
}

void normalise_rows(float* c, int64_t K, int64_t D) {
  for (int64_t k = 0; k < K; ++k) {
    float sq = 0.f;
    for (int64_t d = 0; d < D; ++d) sq += c[k * D + d] * c[k * D + d];
    const float inv = 1.f / std::max(std::sqrt(sq), 1e-12f);
    for (int64_t d = 0; d < D; ++d) c[k * D + d] *= inv;
  }
}

// dots[c][i] = xt[:, i] . cent[c]; labels = argmax over c (strict >, so ties keep the lowest c).
void assign_block(const float* xt, int64_t N, int64_t D, const float* cent, int64_t K, float* dots,
                  float* best, int32_t* lab) {
  for (int64_t c = 0; c < K; ++c) {
    float* dc = dots + c * N;
    std::fill(dc, dc + N, 0.f);
    for (int64_t d = 0; d < D; ++d) {
      const float cv = cent[c * D + d];
      const float* xd = xt + d * N;
#pragma omp simd
      for (int64_t i = 0; i < N; ++i) dc[i] += cv * xd[i];
    }
  }
  std::copy(dots, dots + N, best);
  std::fill(lab, lab + N, 0);
  for (int64_t c = 1; c < K; ++c) {
    const float* dc = dots + c * N;
#pragma omp simd
    for (int64_t i = 0; i < N; ++i) {
      const bool better = dc[i] > best[i];
      best[i] = better ? dc[i] : best[i];
      lab[i] = better ? static_cast<int32_t>(c) : lab[i];
    }
  }
}

void dot_with_point(const float* xt, int64_t N, int64_t D, int64_t j, float* out) {
  std::fill(out, out + N, 0.f);
  for (int64_t d = 0; d < D; ++d) {
    const float cv = xt[d * N + j];
    const float* xd = xt + d * N;
#pragma omp simd
    for (int64_t i = 0; i < N; ++i) out[i] += cv * xd[i];
  }
}

void copy_point(const float* xt, int64_t N, int64_t D, int64_t j, float* dst) {
  for (int64_t d = 0; d < D; ++d) dst[d] = xt[d * N + j];
}

// k-means++ (cosine distance, D^2 weighting). Sums and the sampling run in double,
// sequentially, the same way on every backend.
void init_plus_plus(const float* xt, int64_t N, int64_t D, int64_t K, uint64_t seed,
                    uint64_t problem, float* cent, float* dist, float* tmp) {
  int64_t idx = std::min<int64_t>(static_cast<int64_t>(uniform_draw(seed, problem, 0) * N), N - 1);
  copy_point(xt, N, D, idx, cent);
  dot_with_point(xt, N, D, idx, tmp);
  for (int64_t i = 0; i < N; ++i) dist[i] = std::max(0.f, 1.f - tmp[i]);
  for (int64_t c = 1; c < K; ++c) {
    double total = 0.0;
    for (int64_t i = 0; i < N; ++i) total += static_cast<double>(dist[i]) * dist[i];
    if (total > 0.0) {
      const double target = uniform_draw(seed, problem, static_cast<uint32_t>(c)) * total;
      double run = 0.0;
      idx = -1;
      int64_t last_positive = 0;
      for (int64_t i = 0; i < N; ++i) {
        const double w = static_cast<double>(dist[i]) * dist[i];
        if (w > 0.0) last_positive = i;
        run += w;
        if (run > target) {
          idx = i;
          break;
        }
      }
      if (idx < 0) idx = last_positive;  // target rounded onto the very end of the sum
    } else {
      idx = c % N;  // every point already coincides with a centroid (e.g. N < K)
    }
    copy_point(xt, N, D, idx, cent + c * D);
    dot_with_point(xt, N, D, idx, tmp);
    for (int64_t i = 0; i < N; ++i) dist[i] = std::min(dist[i], std::max(0.f, 1.f - tmp[i]));
  }
}

}  // namespace

bool kmeans_cpu(const Buffer& x, const Buffer& init_centroids, const Buffer& centroids,
                const Buffer& labels, const KmeansParams& p) {
  kmeans_check(x, init_centroids, centroids, labels, p, -1);
  const int64_t P = x.dim(0), N = x.dim(1), D = x.dim(2), K = p.k;
  if (P == 0) return false;
  if (has_nonfinite(x.data<float>(), x.numel())) return true;
  if (p.init == KmeansInit::kGiven && has_nonfinite(init_centroids.data<float>(), init_centroids.numel())) {
    return true;
  }
  // One problem of 512 x 16 is ~0.1 ms of work: a couple per thread at least.
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, N * D * K));
  parallel_for(P, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> xt(N * D), dots(K * N), best(N), sums(K * D), dist(N);
    std::vector<int32_t> lab(N);
    for (int64_t pi = begin; pi < end; ++pi) {
      float* cent = centroids.data<float>() + pi * K * D;
      normalise_transpose(x.data<float>() + pi * N * D, N, D, xt.data());
      if (p.init == KmeansInit::kGiven) {
        std::copy_n(init_centroids.data<float>() + pi * K * D, K * D, cent);
        normalise_rows(cent, K, D);
      } else if (p.init == KmeansInit::kFirst) {
        for (int64_t c = 0; c < K; ++c) copy_point(xt.data(), N, D, c % N, cent + c * D);
      } else {
        init_plus_plus(xt.data(), N, D, K, p.seed, static_cast<uint64_t>(pi), cent, dist.data(),
                       best.data());
      }
      for (int64_t it = 0; it < p.iters; ++it) {
        assign_block(xt.data(), N, D, cent, K, dots.data(), best.data(), lab.data());
        for (int64_t c = 0; c < K; ++c) {
          bool any = false;
          for (int64_t i = 0; i < N; ++i) any |= lab[i] == c;
          if (!any) continue;  // empty cluster keeps its centroid
          float sq = 0.f;
          for (int64_t d = 0; d < D; ++d) {
            const float* xd = xt.data() + d * N;
            float s = 0.f;
#pragma omp simd reduction(+ : s)
            for (int64_t i = 0; i < N; ++i) s += lab[i] == c ? xd[i] : 0.f;
            sums[c * D + d] = s;
            sq += s * s;
          }
          if (sq <= 0.f) continue;  // members cancel out: keep the previous direction
          const float inv = 1.f / std::sqrt(sq);
          for (int64_t d = 0; d < D; ++d) cent[c * D + d] = sums[c * D + d] * inv;
        }
      }
      assign_block(xt.data(), N, D, cent, K, dots.data(), best.data(), lab.data());
      int64_t* out_lab = labels.data<int64_t>() + pi * N;
      for (int64_t i = 0; i < N; ++i) out_lab[i] = lab[i];
    }
  });
  return false;
}

bool assign_cpu(const Buffer& y, const Buffer& centroids, const Buffer& labels, const Buffer& sim) {
  assign_check(y, centroids, labels, sim, -1);
  const int64_t P = y.dim(0), M = y.dim(1), D = y.dim(2), K = centroids.dim(1);
  if (P == 0 || M == 0) return false;
  if (has_nonfinite(y.data<float>(), y.numel()) ||
      has_nonfinite(centroids.data<float>(), centroids.numel())) {
    return true;
  }
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, M * D * K));
  parallel_for(P, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> yt(M * D), cent(K * D), dots(K * M), best(M);
    std::vector<int32_t> lab(M);
    for (int64_t pi = begin; pi < end; ++pi) {
      normalise_transpose(y.data<float>() + pi * M * D, M, D, yt.data());
      std::copy_n(centroids.data<float>() + pi * K * D, K * D, cent.data());
      normalise_rows(cent.data(), K, D);
      assign_block(yt.data(), M, D, cent.data(), K, dots.data(), best.data(), lab.data());
      int64_t* out_lab = labels.data<int64_t>() + pi * M;
      float* out_sim = sim.data<float>() + pi * M;
      for (int64_t i = 0; i < M; ++i) {
        out_lab[i] = lab[i];
        out_sim[i] = best[i];
      }
    }
  });
  return false;
}

}  // namespace fer_edge

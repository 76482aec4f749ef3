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
  int bad = 0;  // an int: a bool |-reduction stops GCC vectorising the loop
#pragma omp simd reduction(+ : bad)
  for (int64_t i = 0; i < n; ++i) bad += (v[i] - v[i] != v[i] - v[i]);
  return bad != 0;
}

constexpr int64_t kStrip = 16;  // points per SIMD strip
constexpr int64_t kCentBlock = 8;  // centroids whose dot products stay in registers

// A problem's points, normalised, in two layouts: transposed [D][Np] (Np = N rounded up to a
// strip, zero padded) for the dot products, and (for k-means only) row-major [N][D] for the
// centroid sums.
struct Points {
  int64_t N, D, Np;
  bool with_rows;
  std::vector<float> xt, rows;
  Points(int64_t n, int64_t d, bool rows_too)
      : N(n), D(d), Np((n + kStrip - 1) / kStrip * kStrip), with_rows(rows_too), xt(d * Np, 0.f),
        rows(rows_too ? n * d : 0) {}

  // Returns true when x held NaN or infinity (checked here, while the problem is in cache).
  bool load(const float* x) {
    int bad = 0;  // an int: a bool |-reduction stops GCC vectorising the loop
    for (int64_t i0 = 0; i0 < Np; i0 += kStrip) {
      const int64_t n = std::min(kStrip, N - i0);
      const float* xs = x + i0 * D;
      float sq[kStrip] = {};
      if (n == kStrip) {
        for (int64_t d = 0; d < D; ++d) {
          float* dst = xt.data() + d * Np + i0;
#pragma omp simd reduction(+ : bad)
          for (int64_t l = 0; l < kStrip; ++l) {
            const float v = xs[l * D + d];  // strided loads across the strip (a transpose)
            dst[l] = v;
            sq[l] += v * v;
            bad += (v - v != v - v);
          }
        }
      } else {
        for (int64_t l = 0; l < n; ++l) {
          for (int64_t d = 0; d < D; ++d) {
            const float v = xs[l * D + d];
            xt[d * Np + i0 + l] = v;
            sq[l] += v * v;
            bad += (v - v != v - v);
          }
        }
      }
      float inv[kStrip];
#pragma omp simd
      for (int64_t l = 0; l < kStrip; ++l) inv[l] = 1.f / std::max(std::sqrt(sq[l]), 1e-12f);
      for (int64_t d = 0; d < D; ++d) {
        float* dst = xt.data() + d * Np + i0;
#pragma omp simd
        for (int64_t l = 0; l < kStrip; ++l) dst[l] *= inv[l];
      }
      if (with_rows) {
        for (int64_t l = 0; l < n; ++l) {
          const float* src = xs + l * D;
          float* dst = rows.data() + (i0 + l) * D;
#pragma omp simd
          for (int64_t d = 0; d < D; ++d) dst[d] = src[d] * inv[l];
        }
      }
    }
    return bad != 0;
  }
};

void normalise_rows(float* c, int64_t K, int64_t D) {
  for (int64_t k = 0; k < K; ++k) {
    float sq = 0.f;
    for (int64_t d = 0; d < D; ++d) sq += c[k * D + d] * c[k * D + d];
    const float inv = 1.f / std::max(std::sqrt(sq), 1e-12f);
    for (int64_t d = 0; d < D; ++d) c[k * D + d] *= inv;
  }
}

// labels[i] = argmax_c <x_i, cent_c> (strict >: ties keep the lowest c); best[i] = that dot.
// Dot products accumulate over d in order, as the reference's bmm would in exact arithmetic.
// CB centroids at a time keep their dot products in registers (CB = 4 when K <= 4, so that
// small K does not pay for padding).
template <int CB>
void assign_points_blocked(const Points& pts, const float* cent, int64_t K, int32_t* lab, float* best) {
  const int64_t D = pts.D, Np = pts.Np;
  for (int64_t i0 = 0; i0 < Np; i0 += kStrip) {
    float bv[kStrip];
    int32_t bi[kStrip];
    for (int64_t c0 = 0; c0 < K; c0 += CB) {
      const int64_t nc = std::min<int64_t>(CB, K - c0);
      float acc[CB][kStrip] = {};
      for (int64_t d = 0; d < D; ++d) {
        const float* xd = pts.xt.data() + d * Np + i0;
        for (int64_t c = 0; c < CB; ++c) {
          const float cv = c < nc ? cent[(c0 + c) * D + d] : 0.f;
#pragma omp simd
          for (int64_t l = 0; l < kStrip; ++l) acc[c][l] += cv * xd[l];
        }
      }
      for (int64_t c = 0; c < nc; ++c) {
#pragma omp simd
        for (int64_t l = 0; l < kStrip; ++l) {
          const bool better = (c0 + c == 0) | (acc[c][l] > bv[l]);
          bv[l] = better ? acc[c][l] : bv[l];
          bi[l] = better ? static_cast<int32_t>(c0 + c) : bi[l];
        }
      }
    }
    const int64_t n = std::min(kStrip, pts.N - i0);
    for (int64_t l = 0; l < n; ++l) {
      lab[i0 + l] = bi[l];
      if (best) best[i0 + l] = bv[l];
    }
  }
}

void assign_points(const Points& pts, const float* cent, int64_t K, int32_t* lab, float* best) {
  if (K <= 4) {
    assign_points_blocked<4>(pts, cent, K, lab, best);
  } else {
    assign_points_blocked<kCentBlock>(pts, cent, K, lab, best);
  }
}

void dot_with_point(const Points& pts, int64_t j, float* out) {
  const int64_t D = pts.D, Np = pts.Np;
  std::fill(out, out + Np, 0.f);
  for (int64_t d = 0; d < D; ++d) {
    const float cv = pts.rows[j * D + d];
    const float* xd = pts.xt.data() + d * Np;
#pragma omp simd
    for (int64_t i = 0; i < Np; ++i) out[i] += cv * xd[i];
  }
}

// k-means++ (cosine distance, D^2 weighting). Sums and the sampling run in double,
// sequentially, the same way on every backend.
void init_plus_plus(const Points& pts, int64_t K, uint64_t seed, uint64_t problem, float* cent,
                    float* dist, float* tmp) {
  const int64_t N = pts.N, D = pts.D;
  int64_t idx = std::min<int64_t>(static_cast<int64_t>(uniform_draw(seed, problem, 0) * N), N - 1);
  std::copy_n(pts.rows.data() + idx * D, D, cent);
  dot_with_point(pts, idx, tmp);
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
    std::copy_n(pts.rows.data() + idx * D, D, cent + c * D);
    dot_with_point(pts, idx, tmp);
    for (int64_t i = 0; i < N; ++i) dist[i] = std::min(dist[i], std::max(0.f, 1.f - tmp[i]));
  }
}

// Each non-empty cluster's centroid becomes its members' normalised sum; an empty cluster, or
// one whose members cancel out, keeps its centroid.
void update_centroids(const Points& pts, const int32_t* lab, int64_t K, float* cent, float* sums,
                      int64_t* counts) {
  const int64_t N = pts.N, D = pts.D;
  // Two interleaved partial sums (even / odd points): consecutive points of one cluster would
  // otherwise wait on each other's store. sums holds 2*K*D floats.
  std::fill(sums, sums + 2 * K * D, 0.f);
  std::fill(counts, counts + K, 0);
  for (int64_t i = 0; i < N; ++i) {
    const int64_t c = lab[i];
    ++counts[c];
    float* sc = sums + ((i & 1) * K + c) * D;
    const float* r = pts.rows.data() + i * D;
#pragma omp simd
    for (int64_t d = 0; d < D; ++d) sc[d] += r[d];
  }
  for (int64_t e = 0; e < K * D; ++e) sums[e] += sums[K * D + e];
  for (int64_t c = 0; c < K; ++c) {
    if (counts[c] == 0) continue;
    float sq = 0.f;
    for (int64_t d = 0; d < D; ++d) sq += sums[c * D + d] * sums[c * D + d];
    if (sq <= 0.f) continue;
    const float inv = 1.f / std::sqrt(sq);
    for (int64_t d = 0; d < D; ++d) cent[c * D + d] = sums[c * D + d] * inv;
  }
}

// assign_cosine in one pass over the rows: a strip of kStrip rows is transposed in registers one
// dimension at a time (the strided loads stay in L1) and used at once for the dot products with
// the unit centroids and for the rows' squared norms. The rows are never normalised: dividing by
// |y| > 0 scales every dot product of a row alike, so the arg-max is the same and only the
// winning similarity is divided (the old path wrote a normalised transposed copy of the whole
// problem, rescaled it in a second pass and read it a third time). Ties keep the lowest index.
// Returns true when a row held NaN or infinity.
template <int CB>
bool assign_rows(const float* y, int64_t M, int64_t D, const float* cent, int64_t K, int64_t* out_lab,
                 float* out_sim) {
  int bad = 0;  // an int: a bool |-reduction stops GCC vectorising the loop
  for (int64_t i0 = 0; i0 < M; i0 += kStrip) {
    const int64_t n = std::min(kStrip, M - i0);
    const float* ys = y + i0 * D;
    float bv[kStrip] = {}, sq[kStrip] = {};
    int32_t bi[kStrip] = {};
    for (int64_t c0 = 0; c0 < K; c0 += CB) {
      const int64_t nc = std::min<int64_t>(CB, K - c0);
      float acc[CB][kStrip] = {};
      for (int64_t d = 0; d < D; ++d) {
        float v[kStrip];
        if (n == kStrip) {
#pragma omp simd
          for (int64_t l = 0; l < kStrip; ++l) v[l] = ys[l * D + d];
        } else {
          for (int64_t l = 0; l < kStrip; ++l) v[l] = l < n ? ys[l * D + d] : 0.f;
        }
        if (c0 == 0) {
#pragma omp simd reduction(+ : bad)
          for (int64_t l = 0; l < kStrip; ++l) {
            sq[l] += v[l] * v[l];
            bad += (v[l] - v[l] != v[l] - v[l]);
          }
        }
        for (int64_t c = 0; c < CB; ++c) {
          const float cv = c < nc ? cent[(c0 + c) * D + d] : 0.f;
#pragma omp simd
          for (int64_t l = 0; l < kStrip; ++l) acc[c][l] += cv * v[l];
        }
      }
      for (int64_t c = 0; c < nc; ++c) {
#pragma omp simd
        for (int64_t l = 0; l < kStrip; ++l) {
          const bool better = (c0 + c == 0) | (acc[c][l] > bv[l]);
          bv[l] = better ? acc[c][l] : bv[l];
          bi[l] = better ? static_cast<int32_t>(c0 + c) : bi[l];
        }
      }
    }
    for (int64_t l = 0; l < n; ++l) {
      out_lab[i0 + l] = bi[l];
      out_sim[i0 + l] = bv[l] / std::max(std::sqrt(sq[l]), 1e-12f);
    }
  }
  return bad != 0;
}

}  // namespace

bool kmeans_cpu(const Buffer& x, const Buffer& init_centroids, const Buffer& centroids,
                const Buffer& labels, const KmeansParams& p) {
  kmeans_check(x, init_centroids, centroids, labels, p, -1);
  const int64_t P = x.dim(0), N = x.dim(1), D = x.dim(2), K = p.k;
  if (P == 0) return false;
  if (p.init == KmeansInit::kGiven && has_nonfinite(init_centroids.data<float>(), init_centroids.numel())) {
    return true;
  }
  std::atomic<bool> bad{false};
  // One problem of 512 x 16 is ~0.1 ms of work: a couple per thread at least.
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, N * D * K));
  parallel_for(P, grain, [&](int64_t begin, int64_t end) {
    Points pts(N, D, true);
    std::vector<float> sums(2 * K * D), dist(pts.Np), tmp(pts.Np);
    std::vector<int64_t> counts(K);
    std::vector<int32_t> lab(pts.Np);
    for (int64_t pi = begin; pi < end; ++pi) {
      float* cent = centroids.data<float>() + pi * K * D;
      if (pts.load(x.data<float>() + pi * N * D)) {
        bad = true;  // the caller raises; skip the work (outputs are unspecified)
        continue;
      }
      if (p.init == KmeansInit::kGiven) {
        std::copy_n(init_centroids.data<float>() + pi * K * D, K * D, cent);
        normalise_rows(cent, K, D);
      } else if (p.init == KmeansInit::kFirst) {
        for (int64_t c = 0; c < K; ++c) std::copy_n(pts.rows.data() + (c % N) * D, D, cent + c * D);
      } else {
        init_plus_plus(pts, K, p.seed, static_cast<uint64_t>(pi), cent, dist.data(), tmp.data());
      }
      for (int64_t it = 0; it < p.iters; ++it) {
        assign_points(pts, cent, K, lab.data(), nullptr);
        update_centroids(pts, lab.data(), K, cent, sums.data(), counts.data());
      }
      assign_points(pts, cent, K, lab.data(), nullptr);
      int64_t* out_lab = labels.data<int64_t>() + pi * N;
      for (int64_t i = 0; i < N; ++i) out_lab[i] = lab[i];
    }
  });
  return bad.load();
}

bool assign_cpu(const Buffer& y, const Buffer& centroids, const Buffer& labels, const Buffer& sim) {
  assign_check(y, centroids, labels, sim, -1);
  const int64_t P = y.dim(0), M = y.dim(1), D = y.dim(2), K = centroids.dim(1);
  if (P == 0 || M == 0) return false;
  if (has_nonfinite(centroids.data<float>(), centroids.numel())) return true;
  std::atomic<bool> bad{false};
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, M * D * K));
  parallel_for(P, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> cent(K * D);
    for (int64_t pi = begin; pi < end; ++pi) {
      std::copy_n(centroids.data<float>() + pi * K * D, K * D, cent.data());
      normalise_rows(cent.data(), K, D);
      const bool nonfinite = K <= 4
          ? assign_rows<4>(y.data<float>() + pi * M * D, M, D, cent.data(), K, labels.data<int64_t>() + pi * M,
                           sim.data<float>() + pi * M)
          : assign_rows<kCentBlock>(y.data<float>() + pi * M * D, M, D, cent.data(), K,
                                    labels.data<int64_t>() + pi * M, sim.data<float>() + pi * M);
      if (nonfinite) bad = true;  // the caller raises (outputs are unspecified)
    }
  });
  return bad.load();
}

}  // namespace fer_edge

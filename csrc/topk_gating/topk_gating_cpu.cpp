#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common/parallel.h"
#include "topk_gating/topk_gating.h"

namespace fer_edge {

void topk_gating_check(const Buffer& logits, int64_t k, const Buffer& weights, const Buffer& indices,
                       const Buffer& probs, int device) {
  check_buffer(logits, "logits", {-1, -1}, {DType::f32, DType::f64}, device);
  const int64_t T = logits.dim(0), E = logits.dim(1);
  if (E < 1 || E > kGatingMaxExperts) {
    fail("logits: number of experts E must be in [1, 64], got shape " + shape_str(logits.shape));
  }
  if (k < 1 || k > std::min(kGatingMaxK, E)) {
    fail("k must be in [1, min(4, E=" + std::to_string(E) + ")], got " + std::to_string(k));
  }
  check_buffer(weights, "weights", {T, k}, {logits.dtype}, device);
  check_buffer(indices, "indices", {T, k}, {DType::i64}, device);
  if (present(probs)) check_buffer(probs, "probs", {T, E}, {logits.dtype}, device);
}

void topk_gating_backward_check(const Buffer& grad_weights, const Buffer& weights,
                                const Buffer& indices, const Buffer& grad_probs,
                                const Buffer& probs, const Buffer& grad_logits, int device) {
  check_buffer(grad_logits, "grad_logits", {-1, -1}, {DType::f32, DType::f64}, device);
  const int64_t T = grad_logits.dim(0), E = grad_logits.dim(1);
  if (E < 1 || E > kGatingMaxExperts) fail("grad_logits: E must be in [1, 64], got shape " + shape_str(grad_logits.shape));
  check_buffer(weights, "weights", {T, -1}, {grad_logits.dtype}, device);
  const int64_t k = weights.dim(1);
  if (k < 1 || k > std::min(kGatingMaxK, E)) fail("weights: k must be in [1, min(4, E)], got shape " + shape_str(weights.shape));
  check_buffer(grad_weights, "grad_weights", {T, k}, {grad_logits.dtype}, device);
  check_buffer(indices, "indices", {T, k}, {DType::i64}, device);
  if (present(probs) != present(grad_probs)) fail("probs and grad_probs must be given together");
  if (present(probs)) {
    check_buffer(probs, "probs", {T, E}, {grad_logits.dtype}, device);
    check_buffer(grad_probs, "grad_probs", {T, E}, {grad_logits.dtype}, device);
  }
}

namespace {

// exp for float that GCC vectorises (Cephes-style: 2^n * P(r), |r| <= ln2/2, ~1 ulp).
// glibc only exposes its vector expf under -ffast-math, which we do not want for the rest.
inline float exp_vec(float x) {
  x = std::min(x, 88.3762626647949f);
  const bool underflow = x < -87.33654475f;
  float n = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return underflow ? 0.f : p * scale;
}
inline double exp_vec(double x) { return std::exp(x); }

constexpr int kLanes = 16;

// kLanes tokens at a time, transposed so that every loop below runs across tokens.
template <typename S>
bool gating_block(const S* z, int64_t n, int64_t E, int64_t k, S* w_out, int64_t* i_out, S* p_out) {
  S buf[kGatingMaxExperts][kLanes];
  S val[kGatingMaxK][kLanes];
  int32_t idx[kGatingMaxK][kLanes];
  int bad = 0;  // an int: a bool |-reduction stops GCC vectorising the loop
#pragma omp simd reduction(+ : bad)
  for (int64_t i = 0; i < n * E; ++i) bad += (z[i] != z[i]) | (z[i] == std::numeric_limits<S>::infinity());
  if (bad) return true;  // the caller raises; nothing below may see a NaN (it marks chosen experts)
  if (n == kLanes) {
    for (int64_t e = 0; e < E; ++e) {
#pragma omp simd
      for (int l = 0; l < kLanes; ++l) buf[e][l] = z[l * E + e];  // strided loads (gathers)
    }
  } else {
    for (int64_t l = 0; l < kLanes; ++l) {
      const S* row = z + std::min<int64_t>(l, n - 1) * E;  // pad a short tail with a real row
      for (int64_t e = 0; e < E; ++e) buf[e][l] = row[e];
    }
  }
  // k rounds of arg-max across the lanes. A chosen expert is marked NaN (inputs with NaN were
  // flagged above), which no comparison selects; NaN-free -inf logits stay selectable.
  for (int64_t j = 0; j < k; ++j) {
    S best[kLanes];
    int32_t arg[kLanes];
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) {
      best[l] = -std::numeric_limits<S>::infinity();
      arg[l] = -1;
    }
    for (int64_t e = 0; e < E; ++e) {
      const S* v = buf[e];
#pragma omp simd
      for (int l = 0; l < kLanes; ++l) {
        const bool better = (v[l] > best[l]) | ((arg[l] < 0) & (v[l] == v[l]));
        best[l] = better ? v[l] : best[l];
        arg[l] = better ? static_cast<int32_t>(e) : arg[l];
      }
    }
    for (int l = 0; l < kLanes; ++l) {
      val[j][l] = best[l];
      idx[j][l] = arg[l];
      buf[arg[l]][l] = std::numeric_limits<S>::quiet_NaN();
    }
  }
  // -inf masks an expert; a row must keep k finite logits (else its weights would be 0/0)
  for (int64_t l = 0; l < n; ++l) {
    if (val[k - 1][l] == -std::numeric_limits<S>::infinity()) return true;
  }
  for (int64_t j = 0; j < k; ++j) {
    for (int l = 0; l < kLanes; ++l) buf[idx[j][l]][l] = val[j][l];  // restore for the softmax
  }
  // Softmax over the kept logits == full softmax renormalised over them.
  S sum[kLanes], mx[kLanes];
#pragma omp simd
  for (int l = 0; l < kLanes; ++l) {
    sum[l] = 1;  // exp(max - max)
    mx[l] = val[0][l];
    val[0][l] = 1;
  }
  for (int64_t j = 1; j < k; ++j) {
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) {
      val[j][l] = exp_vec(val[j][l] - mx[l]);
      sum[l] += val[j][l];
    }
  }
  for (int64_t l = 0; l < n; ++l) {
    for (int64_t j = 0; j < k; ++j) {
      w_out[l * k + j] = val[j][l] / sum[l];
      i_out[l * k + j] = idx[j][l];
    }
  }
  if (p_out) {
    S tot[kLanes];
    for (int l = 0; l < kLanes; ++l) tot[l] = 0;
    for (int64_t e = 0; e < E; ++e) {
#pragma omp simd
      for (int l = 0; l < kLanes; ++l) {
        buf[e][l] = exp_vec(buf[e][l] - mx[l]);
        tot[l] += buf[e][l];
      }
    }
    for (int64_t l = 0; l < n; ++l) {
      const S inv = S(1) / tot[l];
      for (int64_t e = 0; e < E; ++e) p_out[l * E + e] = buf[e][l] * inv;
    }
  }
  return false;
}

template <typename S>
bool forward_impl(const Buffer& logits, int64_t k, const Buffer& weights, const Buffer& indices,
                  const Buffer& probs) {
  const int64_t T = logits.dim(0), E = logits.dim(1);
  const int64_t blocks = (T + kLanes - 1) / kLanes;
  std::atomic<bool> bad{false};
  parallel_for(blocks, std::max<int64_t>(1, 2048 / E), [&](int64_t b0, int64_t b1) {
    bool local = false;
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t t0 = b * kLanes, n = std::min<int64_t>(kLanes, T - t0);
      local |= gating_block<S>(logits.data<S>() + t0 * E, n, E, k, weights.data<S>() + t0 * k,
                               indices.data<int64_t>() + t0 * k,
                               present(probs) ? probs.data<S>() + t0 * E : nullptr);
    }
    if (local) bad = true;
  });
  return bad.load();
}

template <typename S>
void backward_impl(const Buffer& gw, const Buffer& w, const Buffer& idx, const Buffer& gp,
                   const Buffer& p, const Buffer& gl) {
  const int64_t T = gl.dim(0), E = gl.dim(1), k = w.dim(1);
  const bool with_probs = present(p);
  parallel_for(T, std::max<int64_t>(1, 8192 / E), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      S* g = gl.data<S>() + t * E;
      if (with_probs) {
        // d softmax: p * (g_p - <g_p, p>)
        const S* pp = p.data<S>() + t * E;
        const S* gpp = gp.data<S>() + t * E;
        S dot = 0;
        for (int64_t e = 0; e < E; ++e) dot += gpp[e] * pp[e];
        for (int64_t e = 0; e < E; ++e) g[e] = pp[e] * (gpp[e] - dot);
      } else {
        std::fill(g, g + E, S(0));
      }
      const S* ww = w.data<S>() + t * k;
      const S* gww = gw.data<S>() + t * k;
      const int64_t* ii = idx.data<int64_t>() + t * k;
      S dot = 0;
      for (int64_t j = 0; j < k; ++j) dot += gww[j] * ww[j];
      for (int64_t j = 0; j < k; ++j) {
        const int64_t e = ii[j];
        if (e >= 0 && e < E) g[e] += ww[j] * (gww[j] - dot);
      }
    }
  });
}

}  // namespace

bool topk_gating_forward_cpu(const Buffer& logits, int64_t k, const Buffer& weights,
                             const Buffer& indices, const Buffer& probs) {
  topk_gating_check(logits, k, weights, indices, probs, -1);
  if (logits.dim(0) == 0) return false;
  if (logits.dtype == DType::f32) return forward_impl<float>(logits, k, weights, indices, probs);
  return forward_impl<double>(logits, k, weights, indices, probs);
}

void topk_gating_backward_cpu(const Buffer& grad_weights, const Buffer& weights,
                              const Buffer& indices, const Buffer& grad_probs, const Buffer& probs,
                              const Buffer& grad_logits) {
  topk_gating_backward_check(grad_weights, weights, indices, grad_probs, probs, grad_logits, -1);
  if (grad_logits.dim(0) == 0) return;
  if (grad_logits.dtype == DType::f32) {
    backward_impl<float>(grad_weights, weights, indices, grad_probs, probs, grad_logits);
  } else {
    backward_impl<double>(grad_weights, weights, indices, grad_probs, probs, grad_logits);
  }
}

}  // namespace fer_edge

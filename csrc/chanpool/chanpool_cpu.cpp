#include <algorithm>
#include <atomic>
#include <limits>
#include <vector>

#include "chanpool/chanpool.h"
#include "common/parallel.h"

namespace fer_edge {

void chanpool_check(const Buffer& x, const Buffer& offsets, const Buffer& drop, const Buffer& out,
                    const Buffer& argmax, int device) {
  check_buffer(x, "x", {-1, -1, -1}, {DType::f32, DType::f64}, device);
  const int64_t B = x.dim(0), C = x.dim(1), S = x.dim(2);
  // Offsets are read on the host to validate them, so they always live in host memory.
  check_buffer(offsets, "offsets", {-1}, {DType::i64}, -1);
  const int64_t L = offsets.dim(0) - 1;
  if (L < 1) fail("group_sizes: need at least one group");
  const int64_t* o = offsets.data<int64_t>();
  if (o[0] != 0 || o[L] != C) {
    fail("group_sizes must sum to the channel count C=" + std::to_string(C) + ", got " +
         std::to_string(o[L] - o[0]));
  }
  for (int64_t l = 0; l < L; ++l) {
    if (o[l + 1] <= o[l]) fail("group_sizes: every group needs >= 1 channel (group " + std::to_string(l) + ")");
  }
  if (!drop.shape.empty()) {
    if (drop.shape.size() == 1) {
      check_buffer(drop, "drop_mask", {C}, {DType::b8, DType::u8}, device);
    } else {
      check_buffer(drop, "drop_mask", {B, C}, {DType::b8, DType::u8}, device);
    }
  }
  check_buffer(out, "out", {B, L, S}, {x.dtype}, device);
  check_buffer(argmax, "argmax", {B, L, S}, {DType::i32}, device);
}

void chanpool_backward_check(const Buffer& grad_out, const Buffer& argmax, const Buffer& offsets,
                             const Buffer& grad_x, int device) {
  check_buffer(grad_x, "grad_x", {-1, -1, -1}, {DType::f32, DType::f64}, device);
  const int64_t B = grad_x.dim(0), C = grad_x.dim(1), S = grad_x.dim(2);
  check_buffer(offsets, "offsets", {-1}, {DType::i64}, -1);
  const int64_t L = offsets.dim(0) - 1;
  if (L < 1 || offsets.data<int64_t>()[L] != C) fail("offsets do not match grad_x channels");
  check_buffer(grad_out, "grad_out", {B, L, S}, {grad_x.dtype}, device);
  check_buffer(argmax, "argmax", {B, L, S}, {DType::i32}, device);
}

namespace {

template <typename T>
bool forward_impl(const Buffer& x, const Buffer& offsets, const Buffer& drop, const Buffer& out,
                  const Buffer& argmax) {
  const int64_t B = x.dim(0), C = x.dim(1), S = x.dim(2), L = offsets.dim(0) - 1;
  const int64_t* o = offsets.data<int64_t>();
  const uint8_t* mask = drop.shape.empty() ? nullptr : drop.data<uint8_t>();
  const int64_t mask_stride = drop.shape.size() == 2 ? C : 0;
  std::atomic<bool> bad{false}, empty_group{false};
  parallel_for(B * L, std::max<int64_t>(1, 32768 / std::max<int64_t>(1, S * C / L)),
               [&](int64_t i0, int64_t i1) {
    std::vector<T> best_buf(S);
    std::vector<int32_t> arg_buf(S);
    // Raw pointers: through std::vector::operator[] GCC reloads the data pointer and gives up
    // vectorising the loop below.
    T* best = best_buf.data();
    int32_t* arg = arg_buf.data();
    int local_bad = 0;  // an int: a bool |-reduction stops GCC vectorising the loop
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t b = i / L, l = i % L;
      const T* xb = x.data<T>() + b * C * S;
      const uint8_t* m = mask ? mask + b * mask_stride : nullptr;
      std::fill(best, best + S, -std::numeric_limits<T>::infinity());
      std::fill(arg, arg + S, -1);
      for (int64_t c = o[l]; c < o[l + 1]; ++c) {
        if (m && m[c]) continue;
        const T* xc = xb + c * S;
#pragma omp simd reduction(+ : local_bad)
        for (int64_t s = 0; s < S; ++s) {
          const bool better = (arg[s] < 0) | (xc[s] > best[s]);  // strict: ties keep lowest c
          best[s] = better ? xc[s] : best[s];
          arg[s] = better ? static_cast<int32_t>(c) : arg[s];
          local_bad += xc[s] != xc[s];
        }
      }
      if (S > 0 && arg[0] < 0) empty_group = true;
      std::copy(best, best + S, out.data<T>() + i * S);
      std::copy(arg, arg + S, argmax.data<int32_t>() + i * S);
    }
    if (local_bad) bad = true;
  });
  if (empty_group) fail("drop_mask drops every channel of a group for some sample");
  return bad.load();
}

template <typename T>
void backward_impl(const Buffer& grad_out, const Buffer& argmax, const Buffer& grad_x) {
  const int64_t B = grad_x.dim(0), C = grad_x.dim(1), S = grad_x.dim(2), L = grad_out.dim(1);
  parallel_for(B, std::max<int64_t>(1, 65536 / std::max<int64_t>(1, C * S)),
               [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      T* gx = grad_x.data<T>() + b * C * S;
      std::fill(gx, gx + C * S, T(0));
      const T* go = grad_out.data<T>() + b * L * S;
      const int32_t* am = argmax.data<int32_t>() + b * L * S;
      for (int64_t i = 0; i < L * S; ++i) {
        const int32_t c = am[i];
        if (c >= 0 && c < C) gx[c * S + i % S] += go[i];
      }
    }
  });
}

}  // namespace

bool chanpool_forward_cpu(const Buffer& x, const Buffer& offsets, const Buffer& drop,
                          const Buffer& out, const Buffer& argmax) {
  chanpool_check(x, offsets, drop, out, argmax, -1);
  if (x.numel() == 0) return false;
  if (x.dtype == DType::f32) return forward_impl<float>(x, offsets, drop, out, argmax);
  return forward_impl<double>(x, offsets, drop, out, argmax);
}

void chanpool_backward_cpu(const Buffer& grad_out, const Buffer& argmax, const Buffer& offsets,
                           const Buffer& grad_x) {
  chanpool_backward_check(grad_out, argmax, offsets, grad_x, -1);
  if (grad_x.numel() == 0) return;
  if (grad_x.dtype == DType::f32) {
    backward_impl<float>(grad_out, argmax, grad_x);
  } else {
    backward_impl<double>(grad_out, argmax, grad_x);
  }
}

}  // namespace fer_edge

#include <cmath>

#include "common/cuda_check.h"
#include "hog/hog.h"

namespace fer_edge {
namespace {

// Boundary directions passed by value (kernel parameter space), identical to the CPU path.
struct Boundaries {
  float cos_k[kHogMaxBins];
  float sin_k[kHogMaxBins];
};

__device__ __forceinline__ int reflect_idx(int i, int n) {
  return i < 0 ? -i : (i >= n ? 2 * n - 2 - i : i);
}

template <typename T>
__device__ __forceinline__ float px(const T* plane, int W, int H, int y, int x) {
  return static_cast<float>(plane[reflect_idx(y, H) * W + reflect_idx(x, W)]);
}

// One thread per (image, channel, cell): at these sizes (tens of thousands of cells) the
// launch dominates, so the simple mapping with L1-cached neighbour reads is enough.
template <typename T>
__global__ void hog_cell_kernel(const T* __restrict__ images, float* __restrict__ out, int B, int C,
                                int H, int W, int cell, int bins, int patch, bool l2,
                                Boundaries bd) {
  const int cells_y = H / cell, cells_x = W / cell, u = patch / cell;
  const long long total = 1LL * B * C * cells_y * cells_x;
  for (long long t = blockIdx.x * 1LL * blockDim.x + threadIdx.x; t < total;
       t += 1LL * gridDim.x * blockDim.x) {
    const int cx = t % cells_x;
    const int cy = (t / cells_x) % cells_y;
    const int c = (t / (1LL * cells_x * cells_y)) % C;
    const int b = t / (1LL * cells_x * cells_y * C);
    const T* plane = images + (1LL * b * C + c) * H * W;
    float hist[kHogMaxBins];
    for (int k = 0; k < bins; ++k) hist[k] = 0.f;
    for (int y = cy * cell; y < (cy + 1) * cell; ++y) {
      for (int x = cx * cell; x < (cx + 1) * cell; ++x) {
        float a0 = px(plane, W, H, y - 1, x - 1), a1 = px(plane, W, H, y - 1, x),
              a2 = px(plane, W, H, y - 1, x + 1);
        float m0 = px(plane, W, H, y, x - 1), m2 = px(plane, W, H, y, x + 1);
        float z0 = px(plane, W, H, y + 1, x - 1), z1 = px(plane, W, H, y + 1, x),
              z2 = px(plane, W, H, y + 1, x + 1);
        float gx = (a0 - a2) + 2.f * (m0 - m2) + (z0 - z2);
        float gy = (a0 + 2.f * a1 + a2) - (z0 + 2.f * z1 + z2);
        float mag = sqrtf(gx * gx + gy * gy);
        bool flip = (gx < 0.f) || (gx == 0.f && gy < 0.f);
        float yy = flip ? -gx : gx, xx = flip ? -gy : gy;
        int bin = 0;
        for (int k = 0; k < bins - 1; ++k) bin += (bd.cos_k[k] * yy - bd.sin_k[k] * xx >= 0.f);
        hist[bin] += mag;
      }
    }
    float scale = 1.f;
    if (l2) {
      float sq = 0.f;
      for (int k = 0; k < bins; ++k) sq += hist[k] * hist[k];
      scale = 1.f / fmaxf(sqrtf(sq), 1e-12f);
    }
    const int Wp = W / patch, L = (H / patch) * Wp, F = C * u * u * bins;
    float* dst = out + (1LL * b * L + (cy / u) * Wp + (cx / u)) * F;
    for (int k = 0; k < bins; ++k) dst[((c * bins + k) * u + cy % u) * u + cx % u] = hist[k] * scale;
  }
}

}  // namespace

void hog_cuda(const Buffer& images, const Buffer& out, const HogParams& p, std::uintptr_t stream) {
  hog_check(images, out, p, images.device);
  if (images.device < 0) fail("hog_cuda: images must be on a CUDA device");
  if (images.numel() == 0) return;
  DeviceGuard guard(images.device);
  Boundaries bd{};
  for (int64_t k = 1; k < p.bins; ++k) {
    double t = M_PI * static_cast<double>(k) / static_cast<double>(p.bins);
    bd.cos_k[k - 1] = static_cast<float>(std::cos(t));
    bd.sin_k[k - 1] = static_cast<float>(std::sin(t));
  }
  const int B = images.dim(0), C = images.dim(1), H = images.dim(2), W = images.dim(3);
  const long long cells = 1LL * B * C * (H / p.cell) * (W / p.cell);
  const int threads = 128;
  auto s = reinterpret_cast<cudaStream_t>(stream);
  if (images.dtype == DType::u8) {
    hog_cell_kernel<uint8_t><<<blocks_for(cells, threads), threads, 0, s>>>(
        images.data<uint8_t>(), out.data<float>(), B, C, H, W, p.cell, p.bins, p.patch, p.l2, bd);
  } else {
    hog_cell_kernel<float><<<blocks_for(cells, threads), threads, 0, s>>>(
        images.data<float>(), out.data<float>(), B, C, H, W, p.cell, p.bins, p.patch, p.l2, bd);
  }
  cuda_check(cudaGetLastError(), "hog kernel launch");
}

}  // namespace fer_edge

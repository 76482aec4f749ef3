// Fused MaskFeat HOG targets (methods.md §2): reflect-pad 1, Sobel 3x3 per channel,
// magnitude, unsigned orientation bin floor(atan2(gx, gy) * bins / pi) mod bins, hard-binned
// sums over non-overlapping cell x cell blocks, per-cell L2 normalisation (per channel), then
// patchified for a ViT:
//   images [B, C, H, W] uint8|float32  ->  out [B, (H/patch)*(W/patch), C*(patch/cell)^2*bins]
// Feature order inside a patch is MaskFeat's: (channel, bin, cell row, cell column).
// uint8 pixels are used at their integer value (the L2 normalisation makes scale irrelevant).
#pragma once
#include <cstdint>

#include "common/buffer.h"

namespace fer_edge {

struct HogParams {
  int64_t cell = 8;
  int64_t bins = 9;
  int64_t patch = 16;
  bool l2 = true;  // false: raw magnitude sums
};

constexpr int64_t kHogMaxBins = 64;

// Throws std::invalid_argument on any inconsistency; returns nothing else.
void hog_check(const Buffer& images, const Buffer& out, const HogParams& p, int device);

// Returns true when the float input held a NaN or infinity (the output is then unspecified).
bool hog_cpu(const Buffer& images, const Buffer& out, const HogParams& p);
void hog_cuda(const Buffer& images, const Buffer& out, const HogParams& p, std::uintptr_t stream);

}  // namespace fer_edge

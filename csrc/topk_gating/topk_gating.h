// Top-k gating for mixtures of experts (LEAF, methods.md §4):
//   logits [T, E] f32|f64 -> weights [T, k] = softmax over the k kept logits (the full softmax
//   renormalised over the kept experts), indices [T, k] int64 sorted by logit, descending,
//   ties to the lower expert index; optionally probs [T, E] = full softmax (load-balancing loss).
// Backward: grad_logits = d/dlogits of (weights, probs) given their gradients.
// E <= 64, 1 <= k <= min(4, E).
#pragma once
#include <cstdint>

#include "common/buffer.h"

namespace fer_edge {

constexpr int64_t kGatingMaxExperts = 64;
constexpr int64_t kGatingMaxK = 4;

// `probs` may be an empty Buffer (ptr 0, rank 0) when the full softmax is not wanted.
void topk_gating_check(const Buffer& logits, int64_t k, const Buffer& weights, const Buffer& indices,
                       const Buffer& probs, int device);
void topk_gating_backward_check(const Buffer& grad_weights, const Buffer& weights,
                                const Buffer& indices, const Buffer& grad_probs,
                                const Buffer& probs, const Buffer& grad_logits, int device);

// Returns true when the logits held a NaN (outputs then unspecified).
bool topk_gating_forward_cpu(const Buffer& logits, int64_t k, const Buffer& weights,
                             const Buffer& indices, const Buffer& probs);
void topk_gating_backward_cpu(const Buffer& grad_weights, const Buffer& weights,
                              const Buffer& indices, const Buffer& grad_probs, const Buffer& probs,
                              const Buffer& grad_logits);
void topk_gating_forward_cuda(const Buffer& logits, int64_t k, const Buffer& weights,
                              const Buffer& indices, const Buffer& probs, std::uintptr_t stream);
void topk_gating_backward_cuda(const Buffer& grad_weights, const Buffer& weights,
                               const Buffer& indices, const Buffer& grad_probs, const Buffer& probs,
                               const Buffer& grad_logits, std::uintptr_t stream);

inline bool present(const Buffer& b) { return !b.shape.empty(); }

}  // namespace fer_edge

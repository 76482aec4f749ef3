// Channel-separated max-pool (CAFE, methods.md §5): channels split into L contiguous groups of
// uneven sizes (offsets [L+1], offsets[0] = 0, offsets[L] = C); each output is the max over its
// group's kept channels.
//   x [B, C, S] f32|f64 (S = H*W, or 1 for vectors), drop mask [C] or [B, C] bool (true = drop)
//   -> out [B, L, S], argmax [B, L, S] int32 (the absolute channel; ties: lowest index)
// Backward routes grad_out to the arg-max channel: grad_x [B, C, S], zero elsewhere.
#pragma once
#include <cstdint>

#include "common/buffer.h"

namespace fer_edge {

// `drop` may be an empty Buffer (rank 0): no channel is dropped.
void chanpool_check(const Buffer& x, const Buffer& offsets, const Buffer& drop, const Buffer& out,
                    const Buffer& argmax, int device);
void chanpool_backward_check(const Buffer& grad_out, const Buffer& argmax, const Buffer& offsets,
                             const Buffer& grad_x, int device);

// Returns true when x held a NaN (outputs then unspecified). Throws when a group has every
// channel dropped for some sample.
bool chanpool_forward_cpu(const Buffer& x, const Buffer& offsets, const Buffer& drop,
                          const Buffer& out, const Buffer& argmax);
void chanpool_backward_cpu(const Buffer& grad_out, const Buffer& argmax, const Buffer& offsets,
                           const Buffer& grad_x);
// On CUDA, a fully dropped group yields -inf and argmax -1 (the Python wrapper rejects such
// masks before launching).
void chanpool_forward_cuda(const Buffer& x, const Buffer& offsets, const Buffer& drop,
                           const Buffer& out, const Buffer& argmax, std::uintptr_t stream);
void chanpool_backward_cuda(const Buffer& grad_out, const Buffer& argmax, const Buffer& offsets,
                            const Buffer& grad_x, std::uintptr_t stream);

}  // namespace fer_edge

// fer_edge._C: the torch-free native core. Every entry point takes Buffer views (pointer,
// shape, dtype, device) of contiguous memory the caller owns and has validated; the checks here
// are the backstop and raise ValueError (std::invalid_argument) before touching memory.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <thread>

#include "chanpool/chanpool.h"
#include "common/buffer.h"
#include "common/parallel.h"
#include "hog/hog.h"
#include "kmeans/kmeans.h"
#include "topk_gating/topk_gating.h"

namespace py = pybind11;
using namespace fer_edge;

namespace fer_edge {
#ifdef FER_EDGE_WITH_CUDA
int cuda_device_count();
int cuda_runtime_version();
#endif
}  // namespace fer_edge

namespace {

constexpr bool kWithCuda =
#ifdef FER_EDGE_WITH_CUDA
    true;
#else
    false;
#endif

// Routes a call to the CPU or the CUDA implementation by the buffer's device.
template <typename Cpu, typename Cuda>
auto dispatch(int device, [[maybe_unused]] const char* op, Cpu&& cpu, Cuda&& cuda) {
  if (device < 0) return cpu();
#ifdef FER_EDGE_WITH_CUDA
  return cuda();
#else
  (void)cuda;
  throw std::runtime_error(std::string("fer_edge._C was built without CUDA; cannot run ") + op +
                           " on a CUDA tensor (rebuild with FER_EDGE_CUDA=ON)");
#endif
}

py::dict build_info() {
  py::dict d;
  d["version"] = FER_EDGE_VERSION;
  py::list kernels;
  for (const char* k : {"hog", "kmeans_cosine", "assign_cosine", "topk_gating", "chanpool_max"}) kernels.append(k);
  d["cpu_kernels"] = kernels;
  d["cuda"] = kWithCuda;
  d["cuda_kernels"] = kWithCuda ? kernels : py::list();
  std::string archs = FER_EDGE_CUDA_ARCH_LIST;
  py::list arch_list;
  size_t start = 0;
  while (start < archs.size()) {
    size_t end = archs.find(',', start);
    if (end == std::string::npos) end = archs.size();
    if (end > start) arch_list.append(archs.substr(start, end - start));
    start = end + 1;
  }
  d["cuda_archs"] = arch_list;
#ifdef FER_EDGE_WITH_CUDA
  d["cuda_runtime"] = cuda_runtime_version();
  d["cuda_devices"] = cuda_device_count();
#else
  d["cuda_runtime"] = py::none();
  d["cuda_devices"] = 0;
#endif
#if defined(__clang__)
  d["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  d["compiler"] = std::string("gcc ") + __VERSION__;
#else
  d["compiler"] = "unknown";
#endif
  d["cpu_arch_flag"] = FER_EDGE_CPU_ARCH_FLAG;
  d["threading"] = "std::thread fork-join";
  d["num_threads"] = get_num_threads();
  d["hardware_threads"] = static_cast<int>(std::thread::hardware_concurrency());
  return d;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fer_edge native kernels (torch-independent C++/CUDA core)";

  py::class_<Buffer>(m, "Buffer")
      .def(py::init([](std::uintptr_t ptr, std::vector<int64_t> shape, const std::string& dtype,
                       int device) {
             Buffer b;
             b.ptr = ptr;
             b.shape = std::move(shape);
             b.dtype = parse_dtype(dtype);
             b.device = device;
             return b;
           }),
           py::arg("ptr"), py::arg("shape"), py::arg("dtype"), py::arg("device") = -1)
      .def(py::init<>(), "An absent optional argument.")
      .def_property_readonly("shape", [](const Buffer& b) { return b.shape; })
      .def_property_readonly("dtype", [](const Buffer& b) { return std::string(dtype_name(b.dtype)); })
      .def_property_readonly("device", [](const Buffer& b) { return b.device; })
      .def("__repr__", [](const Buffer& b) {
        return "Buffer(shape=" + shape_str(b.shape) + ", dtype=" + dtype_name(b.dtype) +
               ", device=" + std::to_string(b.device) + ")";
      });

  m.def("build_info", &build_info);
  m.def("get_num_threads", &get_num_threads);
  m.def("set_num_threads", &set_num_threads, py::arg("n"),
        "Threads for CPU kernels; n <= 0 restores the default (FER_EDGE_NUM_THREADS or all cores).");

  using gil = py::call_guard<py::gil_scoped_release>;

  m.def("hog", [](const Buffer& images, const Buffer& out, int64_t cell, int64_t bins, int64_t patch,
                  bool l2, std::uintptr_t stream) {
        HogParams p{cell, bins, patch, l2};
        return dispatch(images.device, "hog", [&] { return hog_cpu(images, out, p); },
                        [&] { hog_cuda(images, out, p, stream); return false; });
      },
      py::arg("images"), py::arg("out"), py::arg("cell"), py::arg("bins"), py::arg("patch"),
      py::arg("l2"), py::arg("stream") = 0, gil(),
      "Returns True when float input held NaN/inf (CPU only).");

  m.def("kmeans_cosine", [](const Buffer& x, const Buffer& init, const Buffer& centroids,
                            const Buffer& labels, const Buffer& workspace, int64_t k, int64_t iters,
                            int init_mode, uint64_t seed, std::uintptr_t stream) {
        if (init_mode < 0 || init_mode > 2) fail("init mode must be 0 (first), 1 (kmeans++) or 2 (given)");
        KmeansParams p{k, iters, static_cast<KmeansInit>(init_mode), seed};
        return dispatch(x.device, "kmeans_cosine",
                        [&] { return kmeans_cpu(x, init, centroids, labels, p); },
                        [&] { kmeans_cuda(x, init, centroids, labels, workspace, p, stream); return false; });
      },
      py::arg("x"), py::arg("init"), py::arg("centroids"), py::arg("labels"), py::arg("workspace"),
      py::arg("k"), py::arg("iters"), py::arg("init_mode"), py::arg("seed"), py::arg("stream") = 0, gil());

  m.def("assign_cosine", [](const Buffer& y, const Buffer& centroids, const Buffer& labels,
                            const Buffer& sim, std::uintptr_t stream) {
        return dispatch(y.device, "assign_cosine", [&] { return assign_cpu(y, centroids, labels, sim); },
                        [&] { assign_cuda(y, centroids, labels, sim, stream); return false; });
      },
      py::arg("y"), py::arg("centroids"), py::arg("labels"), py::arg("sim"), py::arg("stream") = 0, gil());

  m.def("topk_gating_forward", [](const Buffer& logits, int64_t k, const Buffer& weights,
                                  const Buffer& indices, const Buffer& probs, std::uintptr_t stream) {
        return dispatch(logits.device, "topk_gating",
                        [&] { return topk_gating_forward_cpu(logits, k, weights, indices, probs); },
                        [&] { topk_gating_forward_cuda(logits, k, weights, indices, probs, stream); return false; });
      },
      py::arg("logits"), py::arg("k"), py::arg("weights"), py::arg("indices"), py::arg("probs"),
      py::arg("stream") = 0, gil());

  m.def("topk_gating_backward", [](const Buffer& gw, const Buffer& w, const Buffer& idx,
                                   const Buffer& gp, const Buffer& p, const Buffer& gl,
                                   std::uintptr_t stream) {
        dispatch(gl.device, "topk_gating_backward",
                 [&] { topk_gating_backward_cpu(gw, w, idx, gp, p, gl); return 0; },
                 [&] { topk_gating_backward_cuda(gw, w, idx, gp, p, gl, stream); return 0; });
      },
      py::arg("grad_weights"), py::arg("weights"), py::arg("indices"), py::arg("grad_probs"),
      py::arg("probs"), py::arg("grad_logits"), py::arg("stream") = 0, gil());

  m.def("chanpool_forward", [](const Buffer& x, const Buffer& offsets, const Buffer& drop,
                               const Buffer& out, const Buffer& argmax, std::uintptr_t stream) {
        return dispatch(x.device, "chanpool_max",
                        [&] { return chanpool_forward_cpu(x, offsets, drop, out, argmax); },
                        [&] { chanpool_forward_cuda(x, offsets, drop, out, argmax, stream); return false; });
      },
      py::arg("x"), py::arg("offsets"), py::arg("drop"), py::arg("out"), py::arg("argmax"),
      py::arg("stream") = 0, gil());

  m.def("chanpool_backward", [](const Buffer& grad_out, const Buffer& argmax, const Buffer& offsets,
                                const Buffer& grad_x, std::uintptr_t stream) {
        dispatch(grad_x.device, "chanpool_max_backward",
                 [&] { chanpool_backward_cpu(grad_out, argmax, offsets, grad_x); return 0; },
                 [&] { chanpool_backward_cuda(grad_out, argmax, offsets, grad_x, stream); return 0; });
      },
      py::arg("grad_out"), py::arg("argmax"), py::arg("offsets"), py::arg("grad_x"),
      py::arg("stream") = 0, gil());
}

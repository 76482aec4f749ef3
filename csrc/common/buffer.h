// Raw-buffer views passed from Python (a tensor's data_ptr + shape + dtype + device).
// The native core never sees torch: Python validates first, and these checks are the
// backstop that throws (pybind11 turns std::invalid_argument into ValueError) before any
// memory is touched, so bad input can never abort the process.
#pragma once
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace fer_edge {

enum class DType { u8, i32, i64, f32, f64, b8 };

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::u8: return "uint8";
    case DType::i32: return "int32";
    case DType::i64: return "int64";
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::b8: return "bool";
  }
  return "?";
}

inline DType parse_dtype(const std::string& s) {
  if (s == "uint8") return DType::u8;
  if (s == "int32") return DType::i32;
  if (s == "int64") return DType::i64;
  if (s == "float32") return DType::f32;
  if (s == "float64") return DType::f64;
  if (s == "bool") return DType::b8;
  throw std::invalid_argument("unsupported dtype '" + s + "'");
}

inline std::string shape_str(const std::vector<int64_t>& s);

// A contiguous, row-major buffer. device < 0 means host memory, otherwise a CUDA ordinal.
struct Buffer {
  std::uintptr_t ptr = 0;
  std::vector<int64_t> shape;
  DType dtype = DType::f32;
  int device = -1;

  // Throws instead of wrapping around: a product that overflows int64 could otherwise pass the
  // null-pointer check below as "empty" and reach the kernels.
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape) {
      if (s < 0) throw std::invalid_argument("negative extent in shape " + shape_str(shape));
      if (__builtin_mul_overflow(n, s, &n)) {
        throw std::invalid_argument("shape " + shape_str(shape) + " has more elements than int64 can count");
      }
    }
    return n;
  }
  int64_t dim(size_t i) const { return shape.at(i); }
  template <typename T>
  T* data() const { return reinterpret_cast<T*>(ptr); }
};

inline std::string shape_str(const std::vector<int64_t>& s) {
  std::ostringstream o;
  o << "(";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  if (s.size() == 1) o << ",";
  o << ")";
  return o.str();
}

[[noreturn]] inline void fail(const std::string& msg) { throw std::invalid_argument(msg); }

// Checks one argument: rank, dtype, shape (-1 = any extent), non-null when non-empty,
// and that it lives on `device`.
inline void check_buffer(const Buffer& b, const char* name, std::vector<int64_t> expect,
                         std::initializer_list<DType> dtypes, int device) {
  if (b.shape.size() != expect.size()) {
    fail(std::string(name) + ": expected rank " + std::to_string(expect.size()) +
         ", got shape " + shape_str(b.shape));
  }
  for (size_t i = 0; i < expect.size(); ++i) {
    if (b.shape[i] < 0) fail(std::string(name) + ": negative extent in " + shape_str(b.shape));
    if (expect[i] >= 0 && b.shape[i] != expect[i]) {
      fail(std::string(name) + ": expected shape " + shape_str(expect) + ", got " +
           shape_str(b.shape));
    }
  }
  bool ok = false;
  for (DType d : dtypes) ok = ok || d == b.dtype;
  if (!ok) {
    std::string want;
    for (DType d : dtypes) want += std::string(want.empty() ? "" : "|") + dtype_name(d);
    fail(std::string(name) + ": expected dtype " + want + ", got " + dtype_name(b.dtype));
  }
  if (b.numel() > 0 && b.ptr == 0) fail(std::string(name) + ": null data pointer");
  if (b.device != device) {
    fail(std::string(name) + ": on device " + std::to_string(b.device) + ", expected " +
         std::to_string(device) + " (-1 = cpu)");
  }
}

}  // namespace fer_edge

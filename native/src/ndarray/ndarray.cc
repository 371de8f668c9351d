#include "ndarray/ndarray.h"

#include "common/atomic_file.h"

#include "backend/device.h"

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <thread>

#include <unistd.h>

namespace loom {

void rethrow(const ErrorPtr &e) {
  if (e) throw Error(e->status, e->message);
}

NDArray NDArray::empty(const Shape &shape, int32_t dtype, const Context &ctx) {
  check_context(ctx);
  LOOM_CHECK(dtype_known(dtype), LOOM_ERR_DTYPE, "unknown dtype code ", dtype);
  LOOM_CHECK(shape.ndim >= 0 && shape.ndim <= LOOM_MAX_NDIM, LOOM_ERR_SHAPE, "ndim ", shape.ndim,
             " is out of range [0, ", LOOM_MAX_NDIM, "]");
  int64_t n = 1;
  for (int i = 0; i < shape.ndim; ++i) {
    LOOM_CHECK(shape.d[i] >= 0, LOOM_ERR_SHAPE, "shape ", shape.str(), " has a negative extent");
    LOOM_CHECK(shape.d[i] == 0 || n <= (int64_t(1) << 48) / shape.d[i], LOOM_ERR_OUT_OF_MEMORY,
               "shape ", shape.str(), " is too large to allocate");
    n *= shape.d[i];
  }
  NDArray a;
  a.chunk_ = std::make_shared<Chunk>();
  a.chunk_->ctx = ctx;
  size_t bytes = static_cast<size_t>(n) * dtype_size(dtype);
  if (bytes) Storage::alloc_into(a.chunk_->block, bytes, ctx);
  a.shape_ = shape;
  a.dtype_ = dtype;
  return a;
}

NDArray NDArray::external(void *data, const Shape &shape, int32_t dtype, const Context &ctx,
                          std::function<void()> release) {
  NDArray a;
  a.chunk_ = std::make_shared<Chunk>();
  a.chunk_->ctx = ctx;
  a.chunk_->block.ptr = data;
  a.chunk_->block.bytes = static_cast<size_t>(shape.size()) * dtype_size(dtype);
  a.chunk_->block.ctx = ctx;
  a.chunk_->block.external_release = std::move(release);
  a.chunk_->var.set_external();  // written behind the engine's back: nothing derived is kept
  a.shape_ = shape;
  a.dtype_ = dtype;
  return a;
}

NDArray NDArray::reshape(const Shape &shape) const {
  Shape s = shape;
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < s.ndim; ++i) {
    if (s.d[i] == -1) {
      LOOM_CHECK(infer < 0, LOOM_ERR_SHAPE, "reshape: more than one -1 in ", shape.str());
      infer = i;
    } else {
      LOOM_CHECK(s.d[i] >= 0, LOOM_ERR_SHAPE, "reshape: negative extent in ", shape.str());
      known *= s.d[i];
    }
  }
  if (infer >= 0) {
    LOOM_CHECK(known > 0 && size() % known == 0, LOOM_ERR_SHAPE, "reshape: cannot infer -1 in ",
               shape.str(), " for an array of shape ", shape_.str());
    s.d[infer] = size() / known;
  }
  LOOM_CHECK(s.size() == size(), LOOM_ERR_SHAPE, "reshape: cannot view an array of shape ",
             shape_.str(), " (", size(), " elements) as ", shape.str(), " (", s.size(),
             " elements)");
  NDArray r = *this;
  r.shape_ = s;
  return r;
}

NDArray NDArray::view(const Shape &shape, int32_t dtype) const {
  size_t need = static_cast<size_t>(shape.size()) * dtype_size(dtype);
  LOOM_CHECK(need <= nbytes(), LOOM_ERR_SHAPE, "view: ", shape.str(), " ", dtype_name(dtype),
             " needs ", need, " bytes but the array holds ", nbytes());
  NDArray r = *this;
  r.shape_ = shape;
  r.dtype_ = dtype;
  r.ag_.reset();
  return r;
}

NDArray NDArray::slice(int64_t begin, int64_t end) const {
  LOOM_CHECK(shape_.ndim >= 1, LOOM_ERR_SHAPE, "slice: cannot slice a 0-dimensional array");
  LOOM_CHECK(begin >= 0 && begin <= end && end <= shape_.d[0], LOOM_ERR_INVALID_ARGUMENT,
             "slice: range [", begin, ", ", end, ") is invalid for axis 0 of shape ",
             shape_.str());
  NDArray r = *this;
  int64_t row = size() / (shape_.d[0] ? shape_.d[0] : 1);
  r.shape_.d[0] = end - begin;
  r.offset_ = offset_ + static_cast<size_t>(begin * row) * dtype_size(dtype_);
  return r;
}

NDArray NDArray::at(int64_t index) const {
  LOOM_CHECK(shape_.ndim >= 1, LOOM_ERR_SHAPE, "at: cannot index a 0-dimensional array");
  int64_t i = index < 0 ? index + shape_.d[0] : index;
  LOOM_CHECK(i >= 0 && i < shape_.d[0], LOOM_ERR_INVALID_ARGUMENT, "at: index ", index,
             " is out of range for axis 0 of shape ", shape_.str());
  NDArray r = slice(i, i + 1);
  for (int k = 1; k < shape_.ndim; ++k) r.shape_.d[k - 1] = shape_.d[k];
  r.shape_.ndim = shape_.ndim - 1;
  return r;
}

// On a device, the kernels the engine released may still be queued: wait for them too.
void NDArray::wait_to_read() const {
  rethrow(Engine::get().wait_to_read(var()));
  device::synchronize(ctx());
}
void NDArray::wait_to_write() const {
  rethrow(Engine::get().wait_to_write(var()));
  device::synchronize(ctx());
}

void NDArray::copy_from_host(const void *src, size_t n) const {
  LOOM_CHECK(n == nbytes(), LOOM_ERR_SHAPE, "copy_from_host: array of shape ", shape_.str(), " ",
             dtype_name(dtype_), " holds ", nbytes(), " bytes, but ", n, " bytes were given");
  LOOM_CHECK(src || n == 0, LOOM_ERR_INVALID_ARGUMENT, "copy_from_host: data is NULL");
  // Push a write so ordering with other ops holds, then wait for it.
  void *dst = data();
  PushOptions o;
  o.name = "copy_from_host";
  o.allow_inline = true;
  o.copy = ctx().dev_type == LOOM_DEVICE_GPU;
  Context c = ctx();
  Engine::get().push([=] { device::copy(dst, c, src, Context{}, n); }, c, {}, {var()}, o);
  wait_to_read();
}

void NDArray::copy_to_host(void *dst, size_t n) const {
  LOOM_CHECK(n == nbytes(), LOOM_ERR_SHAPE, "copy_to_host: array of shape ", shape_.str(), " ",
             dtype_name(dtype_), " holds ", nbytes(), " bytes, but the buffer has ", n, " bytes");
  LOOM_CHECK(dst || n == 0, LOOM_ERR_INVALID_ARGUMENT, "copy_to_host: data is NULL");
  wait_to_read();
  device::copy(dst, Context{}, data(), ctx(), n);
}

// ------------------------------------------------------------ .params files
namespace {
constexpr uint64_t kListMagic = 0x112;
constexpr uint32_t kV1Magic = 0xF993FAC8;
constexpr uint32_t kV2Magic = 0xF993FAC9;
constexpr uint32_t kV3Magic = 0xF993FACA;  // MXNet's NumPy-shape records (0-d arrays)

class Writer {
 public:
  template <typename T>
  void put(T v) {
    buf_.append(reinterpret_cast<const char *>(&v), sizeof(T));
  }
  void bytes(const void *p, size_t n) { buf_.append(static_cast<const char *>(p), n); }
  std::string buf_;
};

// GCC 12 reports a false maybe-uninitialized on std::string members when a
// [[noreturn]] formatting helper is inlined; the members are always built.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
class Reader {
 public:
  Reader(const std::string &path, std::string data) : path_(path), data_(std::move(data)) {}
  template <typename T>
  T get(const char *what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  const char *take(size_t n, const char *what) {
    need(n, what);
    const char *p = data_.data() + pos_;
    pos_ += n;
    return p;
  }
  size_t pos() const { return pos_; }
  size_t remaining() const { return data_.size() - pos_; }
  [[noreturn]] void bad(const std::string &msg) const {
    fail(LOOM_ERR_IO, "'", path_, "' is not a valid .params file: ", msg, " (at byte ", pos_,
         " of ", data_.size(), ")");
  }

 private:
  void need(size_t n, const char *what) {
    if (remaining() < n)
      fail(LOOM_ERR_IO, "'", path_, "' is truncated: expected ", n, " bytes for ", what,
           " at byte ", pos_, ", but the file has ", data_.size(), " bytes");
  }
  std::string path_;
  std::string data_;
  size_t pos_ = 0;
};
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
}  // namespace

void save_params(const std::string &path, const std::vector<NDArray> &arrays,
                 const std::vector<std::string> &names) {
  LOOM_CHECK(names.empty() || names.size() == arrays.size(), LOOM_ERR_INVALID_ARGUMENT,
             "save: ", arrays.size(), " arrays but ", names.size(), " names");
  Writer w;
  w.put<uint64_t>(kListMagic);
  w.put<uint64_t>(0);
  w.put<uint64_t>(arrays.size());
  for (const NDArray &a : arrays) {
    a.wait_to_read();
    bool scalar = a.shape().ndim == 0;
    w.put<uint32_t>(scalar ? kV3Magic : kV2Magic);
    w.put<int32_t>(0);  // dense storage
    w.put<int32_t>(a.shape().ndim);
    for (int i = 0; i < a.shape().ndim; ++i) w.put<int64_t>(a.shape().d[i]);
    w.put<int32_t>(a.ctx().dev_type);
    w.put<int32_t>(a.ctx().dev_id);
    w.put<int32_t>(a.dtype());
    if (a.ctx().dev_type == LOOM_DEVICE_CPU) {
      w.bytes(a.data(), a.nbytes());
    } else {
      std::vector<char> host(a.nbytes());
      a.copy_to_host(host.data(), host.size());
      w.bytes(host.data(), host.size());
    }
  }
  w.put<uint64_t>(names.size());
  for (const auto &n : names) {
    w.put<uint64_t>(n.size());
    w.bytes(n.data(), n.size());
  }
  // Written beside the target and renamed: an existing file is only ever replaced
  // by a complete one, and temporaries of killed saves are cleared.
  write_file_atomic(path, w.buf_.data(), w.buf_.size(), "save");
}

std::vector<std::pair<std::string, NDArray>> load_params(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(LOOM_ERR_IO, "load: cannot open '", path, "': ", std::strerror(errno));
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Reader r(path, std::move(data));
  uint64_t magic = r.get<uint64_t>("the list header");
  if (magic != kListMagic) {
    std::ostringstream os;
    os << "header magic is 0x" << std::hex << magic << ", expected 0x112";
    r.bad(os.str());
  }
  r.get<uint64_t>("the reserved field");
  uint64_t count = r.get<uint64_t>("the array count");
  // Every record takes at least 8 bytes, which bounds a corrupted count.
  if (count > r.remaining() / 8) r.bad("array count " + std::to_string(count) + " is impossible");
  std::vector<NDArray> arrays;
  for (uint64_t k = 0; k < count; ++k) {
    uint32_t m = r.get<uint32_t>("an array magic");
    if (m != kV1Magic && m != kV2Magic && m != kV3Magic) {
      std::ostringstream os;
      os << "array " << k << " has magic 0x" << std::hex << m
         << ", expected 0xF993FAC9 (V2) or 0xF993FAC8 (V1)";
      r.bad(os.str());
    }
    if (m != kV1Magic) {
      int32_t stype = r.get<int32_t>("the storage type");
      if (stype != 0)
        r.bad("array " + std::to_string(k) + " has storage type " + std::to_string(stype) +
              "; only dense (0) is supported");
    }
    int32_t ndim = r.get<int32_t>("ndim");
    if (ndim < 0 || ndim > LOOM_MAX_NDIM)
      r.bad("array " + std::to_string(k) + " has ndim " + std::to_string(ndim));
    Shape s;
    s.ndim = ndim;
    for (int i = 0; i < ndim; ++i) {
      s.d[i] = r.get<int64_t>("a shape extent");
      if (s.d[i] < 0) r.bad("array " + std::to_string(k) + " has a negative extent");
    }
    if (ndim == 0 && m != kV3Magic) {
      // MXNet writes an empty ("none") array as a bare zero-dimensional shape.
      arrays.push_back(NDArray::empty(Shape{0}, kFloat32, Context{}));
      continue;
    }
    int32_t dev_type = r.get<int32_t>("the device type");
    r.get<int32_t>("the device id");
    if (dev_type != LOOM_DEVICE_CPU && dev_type != LOOM_DEVICE_GPU && dev_type != 3)
      r.bad("array " + std::to_string(k) + " has device type " + std::to_string(dev_type));
    int32_t dtype = r.get<int32_t>("the dtype");
    if (!dtype_known(dtype))
      r.bad("array " + std::to_string(k) + " has unknown dtype code " + std::to_string(dtype));
    uint64_t total = 0;
    if (!s.checked_bytes(dtype_size(dtype), &total))
      fail(LOOM_ERR_IO, "'", path, "': array ", k, " declares shape ", s.str(), " ", dtype_name(dtype),
           ", whose byte count overflows 64 bits");
    if (total > static_cast<uint64_t>(r.remaining()))
      fail(LOOM_ERR_IO, "'", path, "' is truncated: array ", k, " of shape ", s.str(), " ",
           dtype_name(dtype), " needs ", total, " bytes at byte ", r.pos(), ", but only ",
           r.remaining(), " remain");
    NDArray a = NDArray::empty(s, dtype, Context{});
    const char *p = r.take(a.nbytes(), "array data");
    if (a.nbytes()) std::memcpy(a.data(), p, a.nbytes());
    arrays.push_back(a);
  }
  std::vector<std::string> names;
  if (r.remaining() > 0 || count > 0) {
    uint64_t nnames = r.get<uint64_t>("the name count");
    if (nnames != 0 && nnames != count)
      r.bad(std::to_string(count) + " arrays but " + std::to_string(nnames) + " names");
    for (uint64_t k = 0; k < nnames; ++k) {
      uint64_t len = r.get<uint64_t>("a name length");
      if (len > r.remaining()) r.bad("name " + std::to_string(k) + " length " + std::to_string(len));
      names.emplace_back(r.take(len, "a name"), len);
    }
  }
  std::vector<std::pair<std::string, NDArray>> out;
  for (size_t k = 0; k < arrays.size(); ++k)
    out.emplace_back(names.empty() ? std::string() : names[k], arrays[k]);
  return out;
}

}  // namespace loom

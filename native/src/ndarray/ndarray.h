// NDArray: a typed, shaped view over a chunk of device memory that owns an
// engine var. Views (reshape, slice, at) share the chunk and so its var.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/base.h"
#include "engine/engine.h"
#include "storage/storage.h"

namespace loom {

// What a kernel sees: a contiguous buffer with a shape and a dtype.
struct TBlob {
  void *dptr = nullptr;
  Shape shape;
  int32_t dtype = kFloat32;
  Context ctx;  // where dptr lives (device pointers are never dereferenced on the host)
  // Set where the caller guarantees that nothing writes this memory while the
  // kernel runs except through the var (a bound argument, an imperative input):
  // the kernel may keep data derived from it there (Var::keep_derived).
  Var *stable = nullptr;
  // Float32 (n, c, h, w) data held in oneDNN's blocked layout (nChw16c, or
  // nChw8c on AVX2: onednn_block(); c a multiple of the block) instead of NCHW:
  // an executor keeps values so between the steps
  // that take it (symbol/executor.cc, choose_training_layouts); every other
  // kernel is only ever given plain data.
  bool blocked = false;
  // With blocked: channels last (NHWC) instead. A prediction executor gives a
  // pooling's output so where the convolutions reading it run in bands of rows
  // (onednn_conv_row_bands); no other kernel is given it.
  bool last = false;
  template <typename T>
  T *ptr() const {
    return static_cast<T *>(dptr);
  }
  int64_t size() const { return shape.size(); }
};

// Memory and its engine var in one allocation; the var is handed to the
// engine through an aliasing shared_ptr, so it lives as long as the chunk.
struct Chunk {
  Block block;  // ptr is null when the array holds no bytes
  Var var;
  Context ctx;
};

struct AGInfo;  // autograd: how this array was produced (imperative/autograd.h)

class NDArray {
 public:
  NDArray() = default;
  static NDArray empty(const Shape &shape, int32_t dtype, const Context &ctx);
  // An array over memory owned elsewhere (no copy); `release` runs when the
  // last array using it is gone.
  static NDArray external(void *data, const Shape &shape, int32_t dtype, const Context &ctx,
                          std::function<void()> release);

  const Shape &shape() const { return shape_; }
  int32_t dtype() const { return dtype_; }
  const Context &ctx() const { return chunk_->ctx; }
  int64_t size() const { return shape_.size(); }
  size_t nbytes() const { return static_cast<size_t>(size()) * dtype_size(dtype_); }
  // An empty array has no block; it still gets a valid, never-read address, so
  // kernels may pass it to memcpy with a zero size or offset it by zero elements.
  void *data() const {
    alignas(64) static char empty[64];
    return chunk_->block.ptr ? static_cast<char *>(chunk_->block.ptr) + offset_ : empty;
  }
  TBlob blob() const { return TBlob{data(), shape_, dtype_, chunk_->ctx, nullptr}; }
  // The blob of an array no one writes but through the engine while it is read.
  TBlob stable_blob() const { return TBlob{data(), shape_, dtype_, chunk_->ctx, &chunk_->var}; }
  VarPtr var() const { return VarPtr(chunk_, &chunk_->var); }
  const std::shared_ptr<Chunk> &chunk() const { return chunk_; }
  bool same_memory(const NDArray &o) const { return chunk_ == o.chunk_; }
  size_t offset() const { return offset_; }  // bytes into the chunk

  // Autograd record of this array (null when not recorded and not a variable).
  const std::shared_ptr<AGInfo> &ag() const { return ag_; }
  void set_ag(std::shared_ptr<AGInfo> ag) { ag_ = std::move(ag); }
  NDArray detached() const {
    NDArray r = *this;
    r.ag_.reset();
    return r;
  }

  NDArray reshape(const Shape &shape) const;
  NDArray slice(int64_t begin, int64_t end) const;
  NDArray at(int64_t index) const;
  // The start of this array's memory seen with another shape and dtype that
  // fit in it (executors carve planned buffers this way).
  NDArray view(const Shape &shape, int32_t dtype) const;

  // Blocking host transfers (they wait on the engine).
  void copy_from_host(const void *src, size_t nbytes) const;
  void copy_to_host(void *dst, size_t nbytes) const;
  // Throws the error stored on the array, if any, after waiting for writes.
  void wait_to_read() const;
  void wait_to_write() const;

 private:
  std::shared_ptr<Chunk> chunk_;
  Shape shape_;
  int32_t dtype_ = kFloat32;
  size_t offset_ = 0;  // bytes into the chunk
  std::shared_ptr<AGInfo> ag_;
};

// Throws the stored failure as a loom::Error.
void rethrow(const ErrorPtr &e);

// `.params` files (MXNet's format; DESIGN.md).
void save_params(const std::string &path, const std::vector<NDArray> &arrays,
                 const std::vector<std::string> &names);
std::vector<std::pair<std::string, NDArray>> load_params(const std::string &path);

}  // namespace loom

// Shared by the ABI entry points: handle tables, error capture, argument checks.
#pragma once

#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "common/pointer_set.h"
#include "common/spinlock.h"
#include "loom/loom.h"
#include "ndarray/ndarray.h"
#include "op/registry.h"

struct loom_ndarray_s {
  loom::NDArray array;
};
struct loom_ndarray_list_s {
  std::vector<std::pair<std::string, loom::NDArray>> items;
};

using loom::fail;

namespace loom_capi {

inline thread_local std::string t_last_error;

inline loom_status set_error(loom_status s, const char *msg) {
  t_last_error = msg;
  return s;
}

// Live handles of one kind. Every use checks membership under the lock and
// copies out what it needs, so a concurrent free never leaves a dangling use.
// Arrays, which every imperative call looks up, use a SpinLock: their uses
// under the lock are a few copies.
template <typename T, typename Lock = std::mutex>
class HandleTable {
 public:
  T *add(T *p) {
    std::unique_ptr<T> owned(p);  // freed if the table cannot grow
    std::lock_guard<Lock> lk(mu_);
    live_.insert(p);
    return owned.release();
  }
  template <typename F>
  auto with(T *p, const char *kind, const char *arg, F &&f) {
    LOOM_CHECK(p, LOOM_ERR_INVALID_ARGUMENT, "argument '", arg, "' is a NULL ", kind, " handle");
    std::lock_guard<Lock> lk(mu_);
    LOOM_CHECK(live_.contains(p), LOOM_ERR_INVALID_ARGUMENT, "argument '", arg, "' is a ", kind,
               " handle that was already freed (or was never created by Loom)");
    return f(*p);
  }
  // Copies out of a live handle; returns false (touching nothing) if it is not live.
  template <typename F>
  bool try_with(T *p, F &&f) {
    if (!p) return false;
    std::lock_guard<Lock> lk(mu_);
    if (!live_.contains(p)) return false;
    f(*p);
    return true;
  }
  void remove(T *p) {
    if (!p) return;
    {
      std::lock_guard<Lock> lk(mu_);
      if (!live_.erase(p)) return;  // double free: ignore
    }
    delete p;
  }

 private:
  Lock mu_;
  loom::PointerSet live_;
};

inline HandleTable<loom_ndarray_s, loom::SpinLock> &arrays() {
  static auto *t = new HandleTable<loom_ndarray_s, loom::SpinLock>;
  return *t;
}
inline HandleTable<loom_ndarray_list_s> &lists() {
  static auto *t = new HandleTable<loom_ndarray_list_s>;
  return *t;
}

inline loom::NDArray get_array(loom_ndarray h, const char *arg) {
  return arrays().with(h, "ndarray", arg, [](loom_ndarray_s &s) { return s.array; });
}

// Fetches an op's input or output array; the argument name is only built on failure.
inline loom::NDArray get_op_array(loom_ndarray h, const loom::OpDef &op, const char *role, int32_t i) {
  loom::NDArray out;
  if (arrays().try_with(h, [&](loom_ndarray_s &s) { out = s.array; })) return out;
  std::string arg = op.name + " " + role + " " + std::to_string(i);
  return get_array(h, arg.c_str());  // throws the precise error
}

inline loom_ndarray new_handle(loom::NDArray a) {
  return arrays().add(new loom_ndarray_s{std::move(a)});
}

inline const loom::OpDef &get_op(loom_op op) {
  LOOM_CHECK(op, LOOM_ERR_INVALID_ARGUMENT, "argument 'op' is a NULL op handle");
  LOOM_CHECK(loom::Registry::get().contains(op), LOOM_ERR_INVALID_ARGUMENT,
             "argument 'op' is not an op handle from loom_op_get/loom_op_find");
  return *reinterpret_cast<const loom::OpDef *>(op);
}

template <typename T>
inline void need(T *p, const char *arg) {
  LOOM_CHECK(p, LOOM_ERR_INVALID_ARGUMENT, "output argument '", arg, "' is NULL");
}

inline void check_status(const loom::ErrorPtr &e) { loom::rethrow(e); }

}  // namespace loom_capi
using namespace loom_capi;

#define API_BEGIN try {
#define API_END                                                                          \
  }                                                                                      \
  catch (const loom::Error &e) {                                                         \
    return set_error(e.status(), e.what());                                              \
  }                                                                                      \
  catch (const std::bad_alloc &) {                                                       \
    return set_error(LOOM_ERR_OUT_OF_MEMORY, "out of host memory");                      \
  }                                                                                      \
  catch (const std::exception &e) {                                                      \
    return set_error(LOOM_ERR_INTERNAL, (std::string("internal error: ") + e.what()).c_str()); \
  }                                                                                      \
  catch (...) {                                                                          \
    return set_error(LOOM_ERR_INTERNAL, "internal error: unknown exception");            \
  }                                                                                      \
  return LOOM_OK;


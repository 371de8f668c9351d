// ABI entry points for the key-value store.
#include <memory>

#include "c_api/c_api_internal.h"
#include "kvstore/kvstore.h"

struct loom_kvstore_s {
  std::shared_ptr<loom::KVStore> kv;
};

namespace {

HandleTable<loom_kvstore_s> &stores() {
  static auto *t = new HandleTable<loom_kvstore_s>;
  return *t;
}

std::shared_ptr<loom::KVStore> get_kv(loom_kvstore h) {
  return stores().with(h, "kvstore", "kv", [](loom_kvstore_s &s) { return s.kv; });
}

std::vector<std::string> key_list(int32_t num, const char *const *keys, const char *what) {
  LOOM_CHECK(num >= 0 && (num == 0 || keys), LOOM_ERR_INVALID_ARGUMENT, "kvstore ", what,
             ": num is ", num, " but keys is ", keys ? "given" : "NULL");
  std::vector<std::string> out;
  for (int32_t i = 0; i < num; ++i) {
    LOOM_CHECK(keys[i], LOOM_ERR_INVALID_ARGUMENT, "kvstore ", what, ": key ", i, " is NULL");
    out.emplace_back(keys[i]);
  }
  return out;
}

std::vector<loom::NDArray> array_list(int32_t num, const loom_ndarray *arrays, const char *what) {
  LOOM_CHECK(num == 0 || arrays, LOOM_ERR_INVALID_ARGUMENT, "kvstore ", what, ": the arrays are NULL");
  std::vector<loom::NDArray> out;
  for (int32_t i = 0; i < num; ++i) {
    std::string arg = std::string(what) + " array " + std::to_string(i);
    out.push_back(get_array(arrays[i], arg.c_str()));
  }
  return out;
}

}  // namespace

extern "C" {

loom_status loom_kvstore_create(loom_kvstore *out, const char *type) {
  API_BEGIN
  need(out, "out");
  LOOM_CHECK(type, LOOM_ERR_INVALID_ARGUMENT, "kvstore: type is NULL");
  *out = stores().add(new loom_kvstore_s{std::make_shared<loom::KVStore>(type)});
  API_END
}

loom_status loom_kvstore_get_type(const char **out, loom_kvstore kv) {
  API_BEGIN
  need(out, "out");
  *out = stores().with(kv, "kvstore", "kv", [](loom_kvstore_s &s) { return s.kv->type().c_str(); });
  API_END
}

loom_status loom_kvstore_get_rank(int32_t *out, loom_kvstore kv) {
  API_BEGIN
  need(out, "out");
  *out = get_kv(kv)->rank();
  API_END
}

loom_status loom_kvstore_get_num_workers(int32_t *out, loom_kvstore kv) {
  API_BEGIN
  need(out, "out");
  *out = get_kv(kv)->num_workers();
  API_END
}

loom_status loom_kvstore_init(loom_kvstore kv, int32_t num, const char *const *keys,
                              const loom_ndarray *values) {
  API_BEGIN
  auto store = get_kv(kv);
  store->init(key_list(num, keys, "init"), array_list(num, values, "init"));
  API_END
}

loom_status loom_kvstore_push(loom_kvstore kv, int32_t num, const char *const *keys,
                              const loom_ndarray *values, int32_t) {
  API_BEGIN
  auto store = get_kv(kv);
  store->push(key_list(num, keys, "push"), array_list(num, values, "push"));
  API_END
}

loom_status loom_kvstore_pull(loom_kvstore kv, int32_t num, const char *const *keys,
                              const loom_ndarray *outs, int32_t) {
  API_BEGIN
  auto store = get_kv(kv);
  store->pull(key_list(num, keys, "pull"), array_list(num, outs, "pull"));
  API_END
}

loom_status loom_kvstore_pushpull(loom_kvstore kv, int32_t num, const char *const *keys,
                                  const loom_ndarray *values, int32_t num_outs,
                                  const char *const *out_keys, const loom_ndarray *outs, int32_t) {
  API_BEGIN
  auto store = get_kv(kv);
  auto pk = key_list(num, keys, "pushpull");
  auto pv = array_list(num, values, "pushpull");
  auto ok = key_list(num_outs, out_keys, "pushpull");
  auto ov = array_list(num_outs, outs, "pushpull");
  store->pushpull(pk, pv, ok, ov);
  API_END
}

loom_status loom_kvstore_set_updater(loom_kvstore kv, const char *op, int32_t num_params,
                                     const char *const *param_keys, const char *const *param_values) {
  API_BEGIN
  LOOM_CHECK(op, LOOM_ERR_INVALID_ARGUMENT, "kvstore set_updater: op is NULL");
  LOOM_CHECK(num_params >= 0 && (num_params == 0 || (param_keys && param_values)),
             LOOM_ERR_INVALID_ARGUMENT, "kvstore set_updater: parameters are NULL");
  std::vector<std::pair<std::string, std::string>> params;
  for (int32_t i = 0; i < num_params; ++i) {
    LOOM_CHECK(param_keys[i] && param_values[i], LOOM_ERR_INVALID_ARGUMENT,
               "kvstore set_updater: parameter ", i, " is NULL");
    params.emplace_back(param_keys[i], param_values[i]);
  }
  get_kv(kv)->set_updater(op, params);
  API_END
}

loom_status loom_kvstore_barrier(loom_kvstore kv) {
  API_BEGIN
  get_kv(kv)->barrier();
  API_END
}

loom_status loom_kvstore_save_states(loom_kvstore kv, const char *path) {
  API_BEGIN
  LOOM_CHECK(path, LOOM_ERR_INVALID_ARGUMENT, "kvstore save_states: path is NULL");
  get_kv(kv)->save_states(path);
  API_END
}

loom_status loom_kvstore_load_states(loom_kvstore kv, const char *path) {
  API_BEGIN
  LOOM_CHECK(path, LOOM_ERR_INVALID_ARGUMENT, "kvstore load_states: path is NULL");
  get_kv(kv)->load_states(path);
  API_END
}

void loom_kvstore_free(loom_kvstore kv) { stores().remove(kv); }

}  // extern "C"

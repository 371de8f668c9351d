// A small JSON reader and writer for symbol files. Parse errors name the
// byte offset and what was expected there.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace loom {
namespace json {

struct Value {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  bool b = false;
  double num = 0;
  std::string str;
  std::vector<Value> arr;
  std::vector<std::pair<std::string, Value>> obj;  // in file order

  const Value *find(const std::string &key) const {
    for (auto &kv : obj)
      if (kv.first == key) return &kv.second;
    return nullptr;
  }
  const char *kind_name() const;
};

// Throws LOOM_ERR_IO naming `what` (a file name or "symbol JSON") and the offset.
Value parse(const std::string &text, const std::string &what);

// Quoted and escaped JSON string.
std::string quote(const std::string &s);

}  // namespace json
}  // namespace loom

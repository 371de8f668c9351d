// MXNet's operator names for Loom's operators (see aliases.cc).
#pragma once

#include <string>
#include <vector>

namespace loom {

struct OpAliases {
  std::string op;                  // Loom's registered name
  std::vector<std::string> names;  // MXNet's names; the first is the one written to JSON
};

const std::vector<OpAliases> &op_aliases();

}  // namespace loom

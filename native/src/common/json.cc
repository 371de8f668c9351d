#include "common/json.h"

#include <cstdio>
#include <cstdlib>

#include "common/base.h"

namespace loom {
namespace json {

const char *Value::kind_name() const {
  switch (kind) {
    case Null: return "null";
    case Bool: return "a boolean";
    case Number: return "a number";
    case String: return "a string";
    case Array: return "an array";
    case Object: return "an object";
  }
  return "?";
}

namespace {
class Parser {
 public:
  Parser(const std::string &t, const std::string &what) : t_(t), what_(what) {}

  Value document() {
    Value v = value(0);
    ws();
    if (i_ != t_.size()) error("end of input");
    return v;
  }

 private:
  [[noreturn]] void error(const char *expected) {
    std::string got = i_ >= t_.size() ? "end of input" : "'" + t_.substr(i_, 12) + "'";
    fail(LOOM_ERR_IO, what_, ": invalid JSON at byte ", i_, " of ", t_.size(), ": expected ",
         expected, ", found ", got);
  }
  void ws() {
    while (i_ < t_.size() && (t_[i_] == ' ' || t_[i_] == '\n' || t_[i_] == '\t' || t_[i_] == '\r'))
      ++i_;
  }
  bool eat(char c) {
    ws();
    if (i_ < t_.size() && t_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void expect(char c, const char *what) {
    if (!eat(c)) error(what);
  }
  bool word(const char *w) {
    size_t n = std::char_traits<char>::length(w);
    if (t_.compare(i_, n, w) == 0) {
      i_ += n;
      return true;
    }
    return false;
  }
  Value value(int depth) {
    if (depth > 64) error("at most 64 levels of nesting");
    ws();
    Value v;
    if (i_ >= t_.size()) error("a value");
    char c = t_[i_];
    if (c == '{') {
      ++i_;
      v.kind = Value::Object;
      if (eat('}')) return v;
      do {
        ws();
        if (i_ >= t_.size() || t_[i_] != '"') error("a quoted key");
        std::string k = string();
        expect(':', "':'");
        v.obj.emplace_back(std::move(k), value(depth + 1));
      } while (eat(','));
      expect('}', "',' or '}'");
    } else if (c == '[') {
      ++i_;
      v.kind = Value::Array;
      if (eat(']')) return v;
      do v.arr.push_back(value(depth + 1));
      while (eat(','));
      expect(']', "',' or ']'");
    } else if (c == '"') {
      v.kind = Value::String;
      v.str = string();
    } else if (word("true")) {
      v.kind = Value::Bool;
      v.b = true;
    } else if (word("false")) {
      v.kind = Value::Bool;
    } else if (word("null")) {
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      const char *b = t_.c_str() + i_;
      char *e = nullptr;
      v.kind = Value::Number;
      v.num = std::strtod(b, &e);
      if (e == b) error("a number");
      i_ += static_cast<size_t>(e - b);
    } else {
      error("a value");
    }
    return v;
  }
  std::string string() {
    ++i_;  // opening quote
    std::string s;
    while (true) {
      if (i_ >= t_.size()) error("a closing '\"'");
      char c = t_[i_++];
      if (c == '"') return s;
      if (c != '\\') {
        s += c;
        continue;
      }
      if (i_ >= t_.size()) error("an escape");
      char e = t_[i_++];
      switch (e) {
        case '"': s += '"'; break;
        case '\\': s += '\\'; break;
        case '/': s += '/'; break;
        case 'b': s += '\b'; break;
        case 'f': s += '\f'; break;
        case 'n': s += '\n'; break;
        case 'r': s += '\r'; break;
        case 't': s += '\t'; break;
        case 'u': {
          if (i_ + 4 > t_.size()) error("four hex digits");
          unsigned cp = static_cast<unsigned>(std::strtoul(t_.substr(i_, 4).c_str(), nullptr, 16));
          i_ += 4;
          if (cp < 0x80) {
            s += static_cast<char>(cp);
          } else if (cp < 0x800) {
            s += static_cast<char>(0xC0 | (cp >> 6));
            s += static_cast<char>(0x80 | (cp & 0x3F));
          } else {
            s += static_cast<char>(0xE0 | (cp >> 12));
            s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            s += static_cast<char>(0x80 | (cp & 0x3F));
          }
          break;
        }
        default: --i_; error("a valid escape");
      }
    }
  }

  const std::string &t_;
  const std::string &what_;
  size_t i_ = 0;
};
}  // namespace

Value parse(const std::string &text, const std::string &what) { return Parser(text, what).document(); }

std::string quote(const std::string &s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\r': o += "\\r"; break;
      case '\t': o += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          o += buf;
        } else {
          o += static_cast<char>(c);
        }
    }
  }
  return o + "\"";
}

}  // namespace json
}  // namespace loom

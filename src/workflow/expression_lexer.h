// The expression language's lexer: text to tokens with 1-based columns. Private to workflow.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "crucible/core/error.h"
#include "crucible/core/json.h"
#include "crucible/workflow/expression.h"

namespace crucible::expr_internal {

enum class Tok { kEnd, kNumber, kString, kIdent, kPunct };

struct Token {
  Tok kind;
  std::string text;
  Json value;
  size_t column;  // 1-based
};

inline const char* const kRoots[] = {"config", "metrics", "state", "artifacts", "item", "index", "run", "branch"};
inline const char* const kFunctions[] = {"len", "range", "str", "int", "float", "min", "max", "abs"};

inline bool is_ident_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
inline bool is_ident_char(char c) { return is_ident_start(c) || (c >= '0' && c <= '9'); }

class Lexer {
 public:
  explicit Lexer(std::string_view text) : text_(text) {}

  tl::expected<std::vector<Token>, ExprError> run() {
    std::vector<Token> out;
    while (true) {
      while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n')) ++pos_;
      size_t col = pos_ + 1;
      if (pos_ >= text_.size()) {
        out.push_back({Tok::kEnd, "", Json(), col});
        return out;
      }
      char c = text_[pos_];
      if (c >= '0' && c <= '9') {
        auto t = number(col);
        if (!t) return tl::unexpected(t.error());
        out.push_back(*t);
      } else if (c == '\'' || c == '"') {
        auto t = string(col, c);
        if (!t) return tl::unexpected(t.error());
        out.push_back(*t);
      } else if (is_ident_start(c)) {
        size_t start = pos_;
        while (pos_ < text_.size() && is_ident_char(text_[pos_])) ++pos_;
        out.push_back({Tok::kIdent, std::string(text_.substr(start, pos_ - start)), Json(), col});
      } else {
        static const char* const kTwo[] = {"==", "!=", "<=", ">=", "&&", "||"};
        std::string two(text_.substr(pos_, 2));
        bool matched = false;
        for (const char* p : kTwo) {
          if (two == p) {
            out.push_back({Tok::kPunct, two, Json(), col});
            pos_ += 2;
            matched = true;
            break;
          }
        }
        if (matched) continue;
        if (std::string_view("()[],.<>+-*/%!").find(c) == std::string_view::npos) {
          return tl::unexpected(ExprError{col, std::string("unexpected character '") + c + "'"});
        }
        out.push_back({Tok::kPunct, std::string(1, c), Json(), col});
        ++pos_;
      }
    }
  }

 private:
  tl::expected<Token, ExprError> number(size_t col) {
    size_t start = pos_;
    bool is_float = false;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
    if (pos_ + 1 < text_.size() && text_[pos_] == '.' && text_[pos_ + 1] >= '0' && text_[pos_ + 1] <= '9') {
      is_float = true;
      ++pos_;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      is_float = true;
      ++pos_;
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
    }
    std::string s(text_.substr(start, pos_ - start));
    try {
      Json v = is_float ? Json(std::stod(s)) : Json(static_cast<int64_t>(std::stoll(s)));
      return Token{Tok::kNumber, s, v, col};
    } catch (const std::exception&) {
      return tl::unexpected(ExprError{col, "number out of range: " + s});
    }
  }

  tl::expected<Token, ExprError> string(size_t col, char quote) {
    ++pos_;
    std::string out;
    while (pos_ < text_.size() && text_[pos_] != quote) {
      if (text_[pos_] == '\\' && pos_ + 1 < text_.size()) {
        char e = text_[++pos_];
        out.push_back(e == 'n' ? '\n' : e == 't' ? '\t' : e);
      } else {
        out.push_back(text_[pos_]);
      }
      ++pos_;
    }
    if (pos_ >= text_.size()) return tl::unexpected(ExprError{col, "unterminated string"});
    ++pos_;
    return Token{Tok::kString, out, Json(out), col};
  }

  std::string_view text_;
  size_t pos_ = 0;
};

}  // namespace crucible::expr_internal

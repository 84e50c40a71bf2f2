#include "crucible/workflow/expression.h"

#include "expression_lexer.h"

#include <cmath>
#include <limits>
#include <variant>

namespace crucible {
namespace expr_internal {

enum class Op {
  kLiteral,
  kPath,
  kList,
  kCall,
  kNeg,
  kNot,
  kAnd,
  kOr,
  kEq,
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,
  kIn,
  kAdd,
  kSub,
  kMul,
  kDiv,
  kMod,
  kIndex,
  kMember,
  kChain,  // operands joined left to right by `chain` operators of one precedence level
};

struct Node {
  Op op;
  size_t column;
  Json literal;      // kLiteral
  std::string name;  // kPath root, kCall function, kMember field
  std::vector<std::shared_ptr<const Node>> args;
  std::vector<std::pair<Op, size_t>> chain;  // kChain: the operator and column before args[i + 1]
};

using NodePtr = std::shared_ptr<const Node>;

}  // namespace expr_internal

namespace {

using expr_internal::is_ident_char;
using expr_internal::is_ident_start;
using expr_internal::kFunctions;
using expr_internal::kRoots;
using expr_internal::Lexer;
using expr_internal::Node;
using expr_internal::NodePtr;
using expr_internal::Op;
using expr_internal::Tok;
using expr_internal::Token;

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : toks_(std::move(tokens)) {}

  tl::expected<NodePtr, ExprError> parse() {
    auto n = parse_or();
    if (!n) return n;
    if (peek().kind != Tok::kEnd) return fail("unexpected '" + peek().text + "'; expected an operator or the end");
    return n;
  }

 private:
  const Token& peek() const { return toks_[pos_]; }
  bool is(std::string_view punct_or_kw) const {
    const Token& t = peek();
    return (t.kind == Tok::kPunct || t.kind == Tok::kIdent) && t.text == punct_or_kw;
  }
  tl::unexpected<ExprError> fail(std::string msg) const {
    return tl::unexpected(ExprError{peek().column, std::move(msg)});
  }

  static NodePtr make(Op op, size_t col, std::vector<NodePtr> args = {}, std::string name = {}, Json lit = {}) {
    return std::make_shared<const Node>(Node{op, col, std::move(lit), std::move(name), std::move(args), {}});
  }

  // Nesting (parentheses, lists, calls, indexes, `not`, unary minus) is limited, so neither
  // parsing nor evaluation can run out of stack; long chains like 1+1+...+1 are flat instead.
  struct Nesting {
    Parser& p;
    explicit Nesting(Parser& parser) : p(parser) { ++p.depth_; }
    ~Nesting() { --p.depth_; }
    bool too_deep() const { return p.depth_ > kMaxDepth; }
  };
  static constexpr int kMaxDepth = 64;
  tl::unexpected<ExprError> too_deep() const {
    return fail("the expression nests deeper than " + std::to_string(kMaxDepth) + " levels");
  }

  // One precedence level: `next (op next)*`. Two operands make a binary node; more make one
  // flat kChain node evaluated left to right.
  tl::expected<NodePtr, ExprError> binary_chain(tl::expected<NodePtr, ExprError> (Parser::*next)(),
                                                std::initializer_list<std::pair<std::string_view, Op>> ops) {
    auto first = (this->*next)();
    if (!first) return first;
    std::vector<NodePtr> operands{*first};
    std::vector<std::pair<Op, size_t>> between;
    while (true) {
      std::optional<Op> op;
      for (const auto& [text, o] : ops) {
        if (is(text)) op = o;
      }
      if (!op) break;
      between.emplace_back(*op, peek().column);
      ++pos_;
      auto right = (this->*next)();
      if (!right) return right;
      operands.push_back(*right);
    }
    if (operands.size() == 1) return operands[0];
    if (operands.size() == 2) return make(between[0].first, between[0].second, std::move(operands));
    return std::make_shared<const Node>(
        Node{Op::kChain, between[0].second, Json(), {}, std::move(operands), std::move(between)});
  }

  tl::expected<NodePtr, ExprError> parse_or() {
    Nesting nesting(*this);
    if (nesting.too_deep()) return too_deep();
    return binary_chain(&Parser::parse_and, {{"or", Op::kOr}, {"||", Op::kOr}});
  }
  tl::expected<NodePtr, ExprError> parse_and() {
    return binary_chain(&Parser::parse_not, {{"and", Op::kAnd}, {"&&", Op::kAnd}});
  }
  tl::expected<NodePtr, ExprError> parse_not() {
    if (is("not") || is("!")) {
      Nesting nesting(*this);
      if (nesting.too_deep()) return too_deep();
      size_t col = peek().column;
      ++pos_;
      auto operand = parse_not();
      if (!operand) return operand;
      return make(Op::kNot, col, {*operand});
    }
    return parse_comparison();
  }
  tl::expected<NodePtr, ExprError> parse_comparison() {
    return binary_chain(&Parser::parse_additive, {{"==", Op::kEq},
                                                  {"!=", Op::kNe},
                                                  {"<", Op::kLt},
                                                  {"<=", Op::kLe},
                                                  {">", Op::kGt},
                                                  {">=", Op::kGe},
                                                  {"in", Op::kIn}});
  }
  tl::expected<NodePtr, ExprError> parse_additive() {
    return binary_chain(&Parser::parse_multiplicative, {{"+", Op::kAdd}, {"-", Op::kSub}});
  }
  tl::expected<NodePtr, ExprError> parse_multiplicative() {
    return binary_chain(&Parser::parse_unary, {{"*", Op::kMul}, {"/", Op::kDiv}, {"%", Op::kMod}});
  }
  tl::expected<NodePtr, ExprError> parse_unary() {
    if (is("-")) {
      Nesting nesting(*this);
      if (nesting.too_deep()) return too_deep();
      size_t col = peek().column;
      ++pos_;
      auto operand = parse_unary();
      if (!operand) return operand;
      return make(Op::kNeg, col, {*operand});
    }
    return parse_postfix();
  }
  tl::expected<NodePtr, ExprError> parse_postfix() {
    auto node = parse_primary();
    if (!node) return node;
    for (int steps = 0;; ++steps) {
      if (steps > kMaxDepth) return too_deep();
      if (is(".")) {
        size_t col = peek().column;
        ++pos_;
        if (peek().kind != Tok::kIdent) return fail("expected a field name after '.'");
        std::string field = peek().text;
        ++pos_;
        node = make(Op::kMember, col, {*node}, field);
      } else if (is("[")) {
        size_t col = peek().column;
        ++pos_;
        auto index = parse_or();
        if (!index) return index;
        if (!is("]")) return fail("expected ']'");
        ++pos_;
        node = make(Op::kIndex, col, {*node, *index});
      } else {
        return node;
      }
    }
  }
  tl::expected<NodePtr, ExprError> parse_primary() {
    const Token t = peek();
    if (t.kind == Tok::kNumber || t.kind == Tok::kString) {
      ++pos_;
      return make(Op::kLiteral, t.column, {}, {}, t.value);
    }
    if (t.kind == Tok::kPunct && t.text == "(") {
      ++pos_;
      auto inner = parse_or();
      if (!inner) return inner;
      if (!is(")")) return fail("expected ')'");
      ++pos_;
      return inner;
    }
    if (t.kind == Tok::kPunct && t.text == "[") {
      ++pos_;
      std::vector<NodePtr> items;
      if (!is("]")) {
        while (true) {
          auto item = parse_or();
          if (!item) return item;
          items.push_back(*item);
          if (is(",")) {
            ++pos_;
            continue;
          }
          break;
        }
      }
      if (!is("]")) return fail("expected ',' or ']' in list");
      ++pos_;
      return make(Op::kList, t.column, std::move(items));
    }
    if (t.kind == Tok::kIdent) {
      ++pos_;
      if (t.text == "true" || t.text == "false") return make(Op::kLiteral, t.column, {}, {}, Json(t.text == "true"));
      if (t.text == "null") return make(Op::kLiteral, t.column, {}, {}, Json());
      if (is("(")) return parse_call(t);
      for (const char* root : kRoots) {
        if (t.text == root) return make(Op::kPath, t.column, {}, t.text);
      }
      return tl::unexpected(ExprError{
          t.column, "unknown name '" + t.text + "'; expected config, metrics, state, artifacts, item, index or run"});
    }
    if (t.kind == Tok::kEnd) return fail("unexpected end of expression");
    return fail("unexpected '" + t.text + "'");
  }
  tl::expected<NodePtr, ExprError> parse_call(const Token& name) {
    bool known = false;
    for (const char* f : kFunctions) known = known || name.text == f;
    if (!known) {
      return tl::unexpected(ExprError{
          name.column, "unknown function '" + name.text + "'; expected len, range, str, int, float, min, max or abs"});
    }
    ++pos_;  // (
    std::vector<NodePtr> args;
    if (!is(")")) {
      while (true) {
        auto a = parse_or();
        if (!a) return a;
        args.push_back(*a);
        if (is(",")) {
          ++pos_;
          continue;
        }
        break;
      }
    }
    if (!is(")")) return fail("expected ',' or ')' in call to " + name.text);
    ++pos_;
    return make(Op::kCall, name.column, std::move(args), name.text);
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
  int depth_ = 0;
};

// Evaluation ---------------------------------------------------------------------------------

class Evaluator {
 public:
  Evaluator(const Context& ctx, const std::string& text) : ctx_(ctx), text_(text) {}

  Result<Json> eval(const Node& n) {
    switch (n.op) {
      case Op::kLiteral: return n.literal;
      case Op::kPath: return root(n);
      case Op::kList: {
        Json out = Json::array();
        for (const auto& a : n.args) {
          auto v = eval(*a);
          if (!v) return v;
          out.push_back(std::move(*v));
        }
        return out;
      }
      case Op::kMember: return member(n);
      case Op::kIndex: return index(n);
      case Op::kCall: return call(n);
      case Op::kNeg: {
        auto v = eval(*n.args[0]);
        if (!v) return v;
        if (v->is_number_integer()) {
          if (v->get<int64_t>() == std::numeric_limits<int64_t>::min()) {
            return type_error(n, "integer overflow: -(" + json_dump(*v) + ") does not fit in 64 bits");
          }
          return Json(-v->get<int64_t>());
        }
        if (v->is_number()) return Json(-v->get<double>());
        return type_error(n, "'-' needs a number, got " + json_type_name(*v));
      }
      case Op::kNot: {
        auto v = boolean(*n.args[0], "not");
        if (!v) return make_error(v.error());
        return Json(!*v);
      }
      case Op::kAnd:
      case Op::kOr:
      case Op::kChain: return chain(n);
      default: {
        auto l = eval(*n.args[0]);
        if (!l) return l;
        auto r = eval(*n.args[1]);
        if (!r) return r;
        return apply(n.op, n.column, *l, *r);
      }
    }
  }

  // Operands joined by operators of one level, left to right: `and`/`or` stop at the first
  // operand that decides, the others fold.
  Result<Json> chain(const Node& n) {
    auto at = [&n](size_t i) { return n.op == Op::kChain ? n.chain[i] : std::pair<Op, size_t>{n.op, n.column}; };
    const size_t steps = n.args.size() - 1;
    if (at(0).first == Op::kAnd || at(0).first == Op::kOr) {
      const bool is_and = at(0).first == Op::kAnd;
      for (size_t i = 0; i <= steps; ++i) {
        auto v = boolean(*n.args[i], is_and ? "and" : "or");
        if (!v) return make_error(v.error());
        if (*v != is_and || i == steps) return Json(*v);
      }
    }
    auto acc = eval(*n.args[0]);
    if (!acc) return acc;
    for (size_t i = 0; i < steps; ++i) {
      auto r = eval(*n.args[i + 1]);
      if (!r) return r;
      CRUCIBLE_ASSIGN_OR_RETURN(*acc, apply(at(i).first, at(i).second, *acc, *r));
    }
    return acc;
  }

  Result<bool> boolean(const Node& n, const char* op) {
    auto v = eval(n);
    if (!v) return make_error(v.error());
    if (!v->is_boolean()) {
      return make_error(
          error(n, std::string("'") + op + "' needs a boolean, got " + json_type_name(*v) + " " + json_dump(*v)));
    }
    return v->get<bool>();
  }

  Error error(const Node& n, const std::string& msg) const { return error_at(n.column, msg); }
  Error error_at(size_t column, const std::string& msg) const {
    return Error(ErrorCode::kInvalidArgument,
                 "expression '" + text_ + "' column " + std::to_string(column) + ": " + msg);
  }
  Unexpected type_error(const Node& n, const std::string& msg) const { return make_error(error(n, msg)); }
  Unexpected type_error_at(size_t column, const std::string& msg) const { return make_error(error_at(column, msg)); }

 private:
  static Json from_map(const Context::Map& map) {
    Json out = Json::object();
    for (const auto& [k, v] : map) out[k] = v;
    return out;
  }

  // Roots are resolved lazily: `metrics.x` looks up one metric instead of copying the map.
  Result<Json> root(const Node& n) {
    if (n.name == "config") return ctx_.config();
    if (n.name == "metrics") return from_map(ctx_.metrics());
    if (n.name == "state") return from_map(ctx_.state());
    if (n.name == "artifacts") return from_map(ctx_.artifacts());
    if (n.name == "item") return ctx_.item() != nullptr ? *ctx_.item() : Json();
    if (n.name == "index") return ctx_.index() ? Json(*ctx_.index()) : Json();
    if (n.name == "branch") return ctx_.branch() != nullptr ? *ctx_.branch() : Json();
    return Json{{"id", ctx_.run_id().str()},
                {"experiment", ctx_.experiment_id()},
                {"stage", ctx_.current_stage()},
                {"step", ctx_.current_step_key()}};
  }

  Result<Json> member(const Node& n) {
    const Node& base = *n.args[0];
    if (base.op == Op::kPath) {
      const Json* v = nullptr;
      if (base.name == "metrics")
        v = ctx_.get_metric(n.name);
      else if (base.name == "state")
        v = ctx_.get(n.name);
      else if (base.name == "artifacts")
        v = ctx_.get_artifact(n.name);
      if (base.name == "metrics" || base.name == "state" || base.name == "artifacts") {
        return v != nullptr ? *v : Json();
      }
    }
    auto obj = eval(base);
    if (!obj) return obj;
    if (!obj->is_object()) return Json();
    auto it = obj->find(n.name);
    return it == obj->end() ? Json() : *it;
  }

  Result<Json> index(const Node& n) {
    auto base = eval(*n.args[0]);
    if (!base) return base;
    auto idx = eval(*n.args[1]);
    if (!idx) return idx;
    if (base->is_array() && idx->is_number_integer()) {
      int64_t i = idx->get<int64_t>();
      int64_t size = static_cast<int64_t>(base->size());
      if (i < 0) i += size;
      if (i < 0 || i >= size) return Json();
      return (*base)[static_cast<size_t>(i)];
    }
    if (base->is_object() && idx->is_string()) {
      auto it = base->find(idx->get<std::string>());
      return it == base->end() ? Json() : *it;
    }
    if (base->is_null()) return Json();
    return type_error(n, "cannot index " + json_type_name(*base) + " with " + json_type_name(*idx));
  }

  Result<Json> call(const Node& n) {
    std::vector<Json> args;
    for (const auto& a : n.args) {
      auto v = eval(*a);
      if (!v) return v;
      args.push_back(std::move(*v));
    }
    auto arity = [&](size_t lo, size_t hi) -> Status {
      if (args.size() < lo || args.size() > hi) {
        return make_error(error(n, n.name + "() takes " + std::to_string(lo) +
                                       (hi != lo ? "-" + std::to_string(hi) : "") + " arguments, got " +
                                       std::to_string(args.size())));
      }
      return {};
    };
    const bool one = n.name == "len" || n.name == "str" || n.name == "int" || n.name == "float" || n.name == "abs";
    CRUCIBLE_RETURN_IF_ERROR(n.name == "range" ? arity(1, 2) : one ? arity(1, 1) : Status());
    if (n.name == "len") return len(n, args[0]);
    if (n.name == "range") return range(n, args);
    if (n.name == "str") return Json(args[0].is_string() ? args[0].get<std::string>() : json_dump(args[0]));
    if (n.name == "int" || n.name == "float") return convert(n, args[0]);
    if (n.name == "abs") return abs(n, args[0]);
    return min_max(n, std::move(args));
  }

  Result<Json> len(const Node& n, const Json& v) {
    if (v.is_string()) return Json(static_cast<int64_t>(v.get<std::string>().size()));
    if (v.is_array() || v.is_object()) return Json(static_cast<int64_t>(v.size()));
    return type_error(n, "len() needs a string, list or object, got " + json_type_name(v));
  }

  Result<Json> range(const Node& n, const std::vector<Json>& args) {
    for (const Json& a : args) {
      if (!a.is_number_integer()) return type_error(n, "range() needs integers");
    }
    int64_t lo = args.size() == 2 ? args[0].get<int64_t>() : 0;
    int64_t hi = args.back().get<int64_t>();
    int64_t count = 0;
    if (__builtin_sub_overflow(hi, lo, &count) || count > 1'000'000) {
      return type_error(n, "range() is limited to 1,000,000 items");
    }
    Json out = Json::array();
    for (int64_t i = lo; i < hi; ++i) out.push_back(i);
    return out;
  }

  // int() and float(): from a number or a numeric string; int() of a value outside 64 bits is
  // an error, not a wrapped number.
  Result<Json> convert(const Node& n, const Json& v) {
    if (n.name == "int" && v.is_number_integer()) return v;
    double d = 0;
    if (v.is_number()) {
      d = v.get<double>();
    } else if (v.is_string()) {
      try {
        d = std::stod(v.get<std::string>());
      } catch (const std::exception&) {
        return type_error(n, n.name + "() cannot convert " + json_dump(v));
      }
    } else {
      return type_error(n, n.name + "() needs a number or string, got " + json_type_name(v));
    }
    if (!std::isfinite(d)) return type_error(n, n.name + "() of " + json_dump(v) + " is not a finite number");
    if (n.name == "float") return Json(d);
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) {
      return type_error(n, "int() of " + json_dump(v) + " does not fit in 64 bits");
    }
    return Json(static_cast<int64_t>(d));
  }

  Result<Json> abs(const Node& n, const Json& v) {
    if (v.is_number_integer()) {
      if (v.get<int64_t>() == std::numeric_limits<int64_t>::min()) {
        return type_error(n, "integer overflow: abs(" + json_dump(v) + ") does not fit in 64 bits");
      }
      return Json(std::llabs(v.get<int64_t>()));
    }
    if (v.is_number()) return Json(std::fabs(v.get<double>()));
    return type_error(n, "abs() needs a number");
  }

  // min / max over arguments or over one list.
  Result<Json> min_max(const Node& n, std::vector<Json> values) {
    if (values.size() == 1 && values[0].is_array()) values = values[0].get<std::vector<Json>>();
    if (values.empty()) return type_error(n, n.name + "() of nothing");
    Json best = values[0];
    for (const Json& v : values) {
      if (!v.is_number()) return type_error(n, n.name + "() needs numbers");
      bool better = n.name == "min" ? v.get<double>() < best.get<double>() : v.get<double>() > best.get<double>();
      if (better) best = v;
    }
    return best;
  }

  static bool numeric_equal(const Json& a, const Json& b) {
    if (a.is_number() && b.is_number()) return a.get<double>() == b.get<double>();
    return a == b;
  }

  // A binary operator on two values; `column` locates errors.
  Result<Json> apply(Op op, size_t column, const Json& a, const Json& b) {
    switch (op) {
      case Op::kEq: return Json(numeric_equal(a, b));
      case Op::kNe: return Json(!numeric_equal(a, b));
      case Op::kLt:
      case Op::kLe:
      case Op::kGt:
      case Op::kGe: return compare(op, column, a, b);
      case Op::kIn: return contains(column, a, b);
      case Op::kAdd:
        if (a.is_string() && b.is_string()) return Json(a.get<std::string>() + b.get<std::string>());
        if (a.is_array() && b.is_array()) {
          Json out = a;
          for (const Json& v : b) out.push_back(v);
          return out;
        }
        [[fallthrough]];
      default: return arithmetic(op, column, a, b);
    }
  }

  Result<Json> compare(Op op, size_t column, const Json& a, const Json& b) {
    int c = 0;
    if (a.is_number() && b.is_number()) {
      double x = a.get<double>(), y = b.get<double>();
      c = x < y ? -1 : x > y ? 1 : 0;
    } else if (a.is_string() && b.is_string()) {
      c = a.get<std::string>().compare(b.get<std::string>());
    } else {
      return type_error_at(column, "cannot compare " + json_type_name(a) + " " + json_dump(a) + " with " +
                                       json_type_name(b) + " " + json_dump(b));
    }
    switch (op) {
      case Op::kLt: return Json(c < 0);
      case Op::kLe: return Json(c <= 0);
      case Op::kGt: return Json(c > 0);
      default: return Json(c >= 0);
    }
  }

  Result<Json> contains(size_t column, const Json& needle, const Json& hay) {
    if (hay.is_array()) {
      for (const Json& v : hay) {
        if (numeric_equal(v, needle)) return Json(true);
      }
      return Json(false);
    }
    if (hay.is_string() && needle.is_string()) {
      return Json(hay.get<std::string>().find(needle.get<std::string>()) != std::string::npos);
    }
    if (hay.is_object() && needle.is_string()) return Json(hay.contains(needle.get<std::string>()));
    return type_error_at(column, "'in' needs a list, string or object on the right, got " + json_type_name(hay));
  }

  // Integer arithmetic that would wrap is an error, never a silently wrong number.
  Result<Json> integer_arithmetic(Op op, size_t column, int64_t x, int64_t y) {
    int64_t out = 0;
    bool overflow = false;
    switch (op) {
      case Op::kAdd: overflow = __builtin_add_overflow(x, y, &out); break;
      case Op::kSub: overflow = __builtin_sub_overflow(x, y, &out); break;
      case Op::kMul: overflow = __builtin_mul_overflow(x, y, &out); break;
      default:
        if (y == 0) return type_error_at(column, "modulo by zero");
        if (x == std::numeric_limits<int64_t>::min() && y == -1) return Json(int64_t{0});
        return Json(x % y);
    }
    if (overflow) {
      return type_error_at(column, "integer overflow: " + std::to_string(x) + " " + op_text(op) + " " +
                                       std::to_string(y) + " does not fit in 64 bits");
    }
    return Json(out);
  }

  static const char* op_text(Op op) { return op == Op::kAdd ? "+" : op == Op::kSub ? "-" : "*"; }

  Result<Json> arithmetic(Op op, size_t column, const Json& a, const Json& b) {
    if (!a.is_number() || !b.is_number()) {
      return type_error_at(column, "arithmetic needs numbers, got " + json_type_name(a) + " and " + json_type_name(b));
    }
    if (op == Op::kDiv) {
      if (b.get<double>() == 0) return type_error_at(column, "division by zero");
      return finite(column, a.get<double>() / b.get<double>());
    }
    if (a.is_number_integer() && b.is_number_integer()) {
      return integer_arithmetic(op, column, a.get<int64_t>(), b.get<int64_t>());
    }
    double x = a.get<double>(), y = b.get<double>();
    switch (op) {
      case Op::kAdd: return finite(column, x + y);
      case Op::kSub: return finite(column, x - y);
      case Op::kMul: return finite(column, x * y);
      default:
        if (y == 0) return type_error_at(column, "modulo by zero");
        return Json(std::fmod(x, y));
    }
  }

  // JSON has no infinity: an overflowing float is an error too.
  Result<Json> finite(size_t column, double v) {
    if (!std::isfinite(v)) return type_error_at(column, "the result is not a finite number");
    return Json(v);
  }

  const Context& ctx_;
  const std::string& text_;
};

}  // namespace

tl::expected<Expression, ExprError> Expression::parse(std::string_view text) {
  if (size_t bad = invalid_utf8_at(text); bad != std::string_view::npos) {
    return tl::unexpected(ExprError{bad + 1, "not UTF-8 text"});
  }
  auto tokens = Lexer(text).run();
  if (!tokens) return tl::unexpected(tokens.error());
  auto root = Parser(std::move(*tokens)).parse();
  if (!root) return tl::unexpected(root.error());
  Expression e;
  e.text_ = std::string(text);
  e.root_ = *root;
  return e;
}

Expression Expression::from_value(Json value) {
  Expression e;
  e.text_ = json_dump(value);
  e.root_ = std::make_shared<const Node>(Node{Op::kLiteral, 1, std::move(value), {}, {}, {}});
  return e;
}

namespace {

// The member chain below a `config` root, outermost last; false when `n` is not such a chain.
bool config_chain(const Node& n, std::vector<std::string>& out) {
  if (n.op == Op::kPath) return n.name == "config";
  if (n.op == Op::kMember) {
    if (!config_chain(*n.args[0], out)) return false;
    out.push_back(n.name);
    return true;
  }
  if (n.op == Op::kIndex && n.args[1]->op == Op::kLiteral) {
    const Json& idx = n.args[1]->literal;
    if (!idx.is_string() && !idx.is_number_integer()) return false;
    if (!config_chain(*n.args[0], out)) return false;
    out.push_back(idx.is_string() ? idx.get<std::string>() : json_dump(idx));
    return true;
  }
  return false;
}

void collect_config_paths(const Node& n, std::vector<std::vector<std::string>>& out) {
  std::vector<std::string> chain;
  if ((n.op == Op::kMember || n.op == Op::kIndex) && config_chain(n, chain)) {
    out.push_back(std::move(chain));
    return;
  }
  for (const auto& a : n.args) collect_config_paths(*a, out);
}

}  // namespace

std::vector<std::vector<std::string>> Expression::config_paths() const {
  std::vector<std::vector<std::string>> out;
  if (root_) collect_config_paths(*root_, out);
  return out;
}

Result<Json> Expression::evaluate(const Context& ctx) const {
  if (!root_) return make_error(ErrorCode::kFailedPrecondition, "empty expression");
  return Evaluator(ctx, text_).eval(*root_);
}

Result<bool> Expression::evaluate_bool(const Context& ctx) const {
  auto v = evaluate(ctx);
  if (!v) return make_error(v.error());
  if (!v->is_boolean()) {
    return make_error(ErrorCode::kInvalidArgument, "expression '" + text_ + "' must be true or false, got " +
                                                       json_type_name(*v) + " " + json_dump(*v));
  }
  return v->get<bool>();
}

}  // namespace crucible

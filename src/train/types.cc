#include "crucible/train/types.h"

#include <cmath>
#include <limits>

namespace crucible::train {

namespace {

bool is_int_tensor_name(std::string_view name) { return name == "target_tokens"; }

// A JSON array of numbers, or of equal-length arrays of numbers, into shape and values.
Status flatten(const Json& j, const std::string& field, bool as_ints, TensorData& out) {
  if (!j.is_array()) return field_error(field, field + ": expected an array of numbers, got " + json_type_name(j));
  out.dtype = as_ints ? TensorData::Dtype::kInt64 : TensorData::Dtype::kFloat32;
  auto push = [&](const Json& v, const std::string& where) -> Status {
    if (!v.is_number()) return field_error(where, where + ": expected a number, got " + json_type_name(v));
    if (as_ints) {
      if (!v.is_number_integer()) return field_error(where, where + ": expected an integer, got " + json_dump(v));
      out.ints.push_back(v.get<int64_t>());
    } else {
      double d = v.get<double>();
      if (!std::isfinite(d)) return field_error(where, where + ": expected a finite number");
      out.floats.push_back(static_cast<float>(d));
    }
    return {};
  };
  const bool nested = !j.empty() && j[0].is_array();
  if (!nested) {
    for (size_t i = 0; i < j.size(); ++i) {
      CRUCIBLE_RETURN_IF_ERROR(push(j[i], field + "[" + std::to_string(i) + "]"));
    }
    out.shape = {static_cast<int64_t>(j.size())};
    return {};
  }
  const size_t cols = j[0].size();
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string row = field + "[" + std::to_string(i) + "]";
    if (!j[i].is_array() || j[i].size() != cols) {
      return field_error(row, row + ": expected an array of " + std::to_string(cols) + " numbers, like row 0");
    }
    for (size_t k = 0; k < cols; ++k) {
      CRUCIBLE_RETURN_IF_ERROR(push(j[i][k], row + "[" + std::to_string(k) + "]"));
    }
  }
  out.shape = {static_cast<int64_t>(j.size()), static_cast<int64_t>(cols)};
  return {};
}

Result<double> number_field(const Json& j, const std::string& field, const char* key, double fallback) {
  if (!j.contains(key)) return fallback;
  const Json& v = j[key];
  const std::string where = field + "." + key;
  if (!v.is_number()) return field_error(where, where + ": expected a number, got " + json_type_name(v));
  double d = v.get<double>();
  if (!std::isfinite(d)) return field_error(where, where + ": expected a finite number");
  return d;
}

Status only_keys(const Json& j, const std::string& field, std::initializer_list<std::string_view> keys) {
  if (!j.is_object()) return field_error(field, field + ": expected an object, got " + json_type_name(j));
  for (const auto& [key, value] : j.items()) {
    bool known = false;
    for (std::string_view k : keys) known = known || k == key;
    if (!known) {
      std::string list;
      for (std::string_view k : keys) list += (list.empty() ? "" : ", ") + std::string(k);
      return field_error(field + "." + key, field + "." + key + ": unknown field; expected one of " + list);
    }
  }
  return {};
}

}  // namespace

TensorData TensorData::of_ints(std::vector<int64_t> values) {
  TensorData t;
  t.dtype = Dtype::kInt64;
  t.shape = {static_cast<int64_t>(values.size())};
  t.ints = std::move(values);
  return t;
}

TensorData TensorData::of_floats(std::vector<float> values) {
  TensorData t;
  t.dtype = Dtype::kFloat32;
  t.shape = {static_cast<int64_t>(values.size())};
  t.floats = std::move(values);
  return t;
}

TensorData TensorData::of_ints(std::vector<int64_t> values, int64_t rows, int64_t cols) {
  CRUCIBLE_CHECK(static_cast<int64_t>(values.size()) == rows * cols);
  TensorData t = of_ints(std::move(values));
  t.shape = {rows, cols};
  return t;
}

TensorData TensorData::of_floats(std::vector<float> values, int64_t rows, int64_t cols) {
  CRUCIBLE_CHECK(static_cast<int64_t>(values.size()) == rows * cols);
  TensorData t = of_floats(std::move(values));
  t.shape = {rows, cols};
  return t;
}

Json TensorData::to_json() const {
  Json data = dtype == Dtype::kInt64 ? Json(ints) : Json(floats);
  return Json{{"dtype", dtype == Dtype::kInt64 ? "int64" : "float32"}, {"shape", shape}, {"data", std::move(data)}};
}

Result<TensorData> TensorData::from_json(const Json& j, const std::string& field) {
  TensorData t;
  if (j.is_array()) {
    CRUCIBLE_RETURN_IF_ERROR(flatten(j, field, false, t));
    return t;
  }
  CRUCIBLE_RETURN_IF_ERROR(only_keys(j, field, {"dtype", "shape", "data"}));
  const Json dtype = j.value("dtype", Json("float32"));
  if (dtype != "int64" && dtype != "float32") {
    return field_error(field + ".dtype", field + ".dtype: expected \"int64\" or \"float32\", got " + json_dump(dtype));
  }
  if (!j.contains("data")) return field_error(field + ".data", field + ".data: missing");
  CRUCIBLE_RETURN_IF_ERROR(flatten(j["data"], field + ".data", dtype == "int64", t));
  if (j.contains("shape")) {
    const Json& s = j["shape"];
    std::vector<int64_t> shape;
    int64_t n = 1;
    if (s.is_array() && (s.size() == 1 || s.size() == 2)) {
      for (const Json& d : s) {
        if (!d.is_number_integer() || d.get<int64_t>() < 0) {
          shape.clear();
          break;
        }
        shape.push_back(d.get<int64_t>());
        n *= shape.back();
      }
    }
    if (shape.empty() || n != static_cast<int64_t>(t.size())) {
      return field_error(field + ".shape", field + ".shape: expected [n] or [n, k] with n*k = " +
                                               std::to_string(t.size()) + " values, got " + json_dump(s));
    }
    t.shape = std::move(shape);
  }
  return t;
}

const TensorData* Datum::input(std::string_view name) const {
  auto it = loss_fn_inputs.find(std::string(name));
  return it == loss_fn_inputs.end() ? nullptr : &it->second;
}

Json Datum::to_json() const {
  Json inputs = Json::object();
  for (const auto& [name, t] : loss_fn_inputs) inputs[name] = t.to_json();
  return Json{{"model_input", model_input.tokens}, {"loss_fn_inputs", std::move(inputs)}};
}

Result<Datum> Datum::from_json(const Json& j, const std::string& field) {
  CRUCIBLE_RETURN_IF_ERROR(only_keys(j, field, {"model_input", "loss_fn_inputs"}));
  Datum d;
  if (!j.contains("model_input")) return field_error(field + ".model_input", field + ".model_input: missing");
  TensorData tokens;
  CRUCIBLE_RETURN_IF_ERROR(flatten(j["model_input"], field + ".model_input", true, tokens));
  if (tokens.shape.size() != 1) {
    return field_error(field + ".model_input", field + ".model_input: expected a flat array of token ids");
  }
  for (size_t i = 0; i < tokens.ints.size(); ++i) {
    int64_t v = tokens.ints[i];
    if (v < 0 || v > std::numeric_limits<int32_t>::max()) {
      const std::string where = field + ".model_input[" + std::to_string(i) + "]";
      return field_error(where, where + ": expected a token id >= 0, got " + std::to_string(v));
    }
    d.model_input.tokens.push_back(static_cast<int32_t>(v));
  }
  const Json inputs = j.value("loss_fn_inputs", Json::object());
  if (!inputs.is_object()) {
    return field_error(field + ".loss_fn_inputs",
                       field + ".loss_fn_inputs: expected an object, got " + json_type_name(inputs));
  }
  for (const auto& [name, value] : inputs.items()) {
    const std::string where = field + ".loss_fn_inputs." + name;
    TensorData t;
    if (value.is_array()) {
      CRUCIBLE_RETURN_IF_ERROR(flatten(value, where, is_int_tensor_name(name), t));
    } else {
      CRUCIBLE_ASSIGN_OR_RETURN(t, TensorData::from_json(value, where));
    }
    d.loss_fn_inputs.emplace(name, std::move(t));
  }
  return d;
}

std::string_view loss_fn_name(LossFn fn) {
  switch (fn) {
    case LossFn::kCrossEntropy: return "cross_entropy";
    case LossFn::kImportanceSampling: return "importance_sampling";
    case LossFn::kPpo: return "ppo";
    case LossFn::kCispo: return "cispo";
    case LossFn::kDro: return "dro";
  }
  return "?";
}

Result<LossFn> parse_loss_fn(std::string_view name) {
  for (LossFn fn : {LossFn::kCrossEntropy, LossFn::kImportanceSampling, LossFn::kPpo, LossFn::kCispo, LossFn::kDro}) {
    if (loss_fn_name(fn) == name) return fn;
  }
  return field_error("loss_fn", "loss_fn: expected cross_entropy, importance_sampling, ppo, cispo or dro, got '" +
                                    std::string(name) + "'");
}

Json AdamParams::to_json() const {
  return Json{{"learning_rate", learning_rate},
              {"beta1", beta1},
              {"beta2", beta2},
              {"eps", eps},
              {"weight_decay", weight_decay},
              {"grad_clip_norm", grad_clip_norm}};
}

Result<AdamParams> AdamParams::from_json(const Json& j, const std::string& field) {
  CRUCIBLE_RETURN_IF_ERROR(
      only_keys(j, field, {"learning_rate", "beta1", "beta2", "eps", "weight_decay", "grad_clip_norm"}));
  AdamParams p;
  CRUCIBLE_ASSIGN_OR_RETURN(p.learning_rate, number_field(j, field, "learning_rate", p.learning_rate));
  CRUCIBLE_ASSIGN_OR_RETURN(p.beta1, number_field(j, field, "beta1", p.beta1));
  CRUCIBLE_ASSIGN_OR_RETURN(p.beta2, number_field(j, field, "beta2", p.beta2));
  CRUCIBLE_ASSIGN_OR_RETURN(p.eps, number_field(j, field, "eps", p.eps));
  CRUCIBLE_ASSIGN_OR_RETURN(p.weight_decay, number_field(j, field, "weight_decay", p.weight_decay));
  CRUCIBLE_ASSIGN_OR_RETURN(p.grad_clip_norm, number_field(j, field, "grad_clip_norm", p.grad_clip_norm));
  auto bad = [&](const char* key, const char* expected) {
    return field_error(field + "." + key, field + "." + key + ": expected " + expected);
  };
  if (p.learning_rate < 0) return bad("learning_rate", "a learning rate >= 0");
  if (p.beta1 < 0 || p.beta1 >= 1) return bad("beta1", "a value in [0, 1)");
  if (p.beta2 < 0 || p.beta2 >= 1) return bad("beta2", "a value in [0, 1)");
  if (p.eps <= 0) return bad("eps", "a value > 0");
  if (p.weight_decay < 0) return bad("weight_decay", "a value >= 0");
  if (p.grad_clip_norm < 0) return bad("grad_clip_norm", "a norm >= 0 (0 turns clipping off)");
  return p;
}

Json SamplingParams::to_json() const {
  Json j{{"max_tokens", max_tokens},
         {"stop", stop_tokens},
         {"temperature", temperature},
         {"top_k", top_k},
         {"top_p", top_p}};
  if (seed) j["seed"] = *seed;
  return j;
}

Result<SamplingParams> SamplingParams::from_json(const Json& j, const std::string& field) {
  CRUCIBLE_RETURN_IF_ERROR(only_keys(j, field, {"max_tokens", "seed", "stop", "temperature", "top_k", "top_p"}));
  SamplingParams p;
  auto integer = [&](const char* key, int64_t lo, int64_t fallback) -> Result<int64_t> {
    if (!j.contains(key)) return fallback;
    const std::string where = field + "." + key;
    if (!j[key].is_number_integer() || j[key].get<int64_t>() < lo) {
      return field_error(where,
                         where + ": expected an integer >= " + std::to_string(lo) + ", got " + json_dump(j[key]));
    }
    return j[key].get<int64_t>();
  };
  CRUCIBLE_ASSIGN_OR_RETURN(auto max_tokens, integer("max_tokens", 1, p.max_tokens));
  p.max_tokens = static_cast<int>(std::min<int64_t>(max_tokens, 1 << 20));
  CRUCIBLE_ASSIGN_OR_RETURN(auto top_k, integer("top_k", -1, p.top_k));
  p.top_k = static_cast<int>(std::min<int64_t>(top_k, 1 << 30));
  if (j.contains("seed")) {
    CRUCIBLE_ASSIGN_OR_RETURN(auto seed, integer("seed", 0, 0));
    p.seed = static_cast<uint64_t>(seed);
  }
  CRUCIBLE_ASSIGN_OR_RETURN(p.temperature, number_field(j, field, "temperature", p.temperature));
  if (p.temperature < 0) return field_error(field + ".temperature", field + ".temperature: expected a value >= 0");
  CRUCIBLE_ASSIGN_OR_RETURN(p.top_p, number_field(j, field, "top_p", p.top_p));
  if (p.top_p <= 0 || p.top_p > 1) return field_error(field + ".top_p", field + ".top_p: expected a value in (0, 1]");
  if (j.contains("stop")) {
    TensorData stop;
    CRUCIBLE_RETURN_IF_ERROR(flatten(j["stop"], field + ".stop", true, stop));
    for (int64_t t : stop.ints) p.stop_tokens.push_back(static_cast<int32_t>(t));
  }
  return p;
}

std::string_view stop_reason_name(StopReason reason) { return reason == StopReason::kStop ? "stop" : "length"; }

Status validate_batch(const std::vector<Datum>& data, LossFn fn) {
  if (data.empty()) return field_error("data", "data: expected at least one datum");
  for (size_t i = 0; i < data.size(); ++i) {
    const Datum& d = data[i];
    const std::string at = "data[" + std::to_string(i) + "]";
    const int64_t n = static_cast<int64_t>(d.model_input.length());
    if (n == 0) return field_error(at + ".model_input", at + ".model_input: expected at least one token");
    const TensorData* targets = d.input("target_tokens");
    const std::string tfield = at + ".loss_fn_inputs.target_tokens";
    if (!targets) return field_error(tfield, tfield + ": missing (" + std::string(loss_fn_name(fn)) + " needs it)");
    if (targets->dtype != TensorData::Dtype::kInt64) return field_error(tfield, tfield + ": expected int64 token ids");
    const bool soft = targets->shape.size() == 2;
    if (targets->rows() != n || (soft && fn != LossFn::kCrossEntropy)) {
      return field_error(tfield, tfield + ": expected " + std::to_string(n) + " targets (one per input token" +
                                     (fn == LossFn::kCrossEntropy ? ", or [" + std::to_string(n) + ", k]" : "") +
                                     "), got shape " + json_dump(targets->shape));
    }
    for (int64_t t : targets->ints) {
      if (t < 0) return field_error(tfield, tfield + ": expected token ids >= 0, got " + std::to_string(t));
    }
    std::vector<std::string> needed;
    if (fn == LossFn::kCrossEntropy) {
      needed = {"weights"};
    } else {
      needed = {"logprobs", "advantages"};
    }
    for (const std::string& name : needed) {
      const std::string field = at + ".loss_fn_inputs." + name;
      const TensorData* t = d.input(name);
      if (!t) return field_error(field, field + ": missing (" + std::string(loss_fn_name(fn)) + " needs it)");
      if (t->shape != targets->shape) {
        return field_error(field, field + ": expected the shape of target_tokens " + json_dump(targets->shape) +
                                      ", got " + json_dump(t->shape));
      }
    }
  }
  return {};
}

Datum next_token_datum(const std::vector<int32_t>& tokens, size_t prompt_len) {
  Datum d;
  if (tokens.size() < 2) return d;
  d.model_input.tokens.assign(tokens.begin(), tokens.end() - 1);
  std::vector<int64_t> targets(tokens.begin() + 1, tokens.end());
  std::vector<float> weights(targets.size(), 1.0f);
  for (size_t t = 0; t + 1 < prompt_len && t < weights.size(); ++t) weights[t] = 0.0f;
  d.loss_fn_inputs["target_tokens"] = TensorData::of_ints(std::move(targets));
  d.loss_fn_inputs["weights"] = TensorData::of_floats(std::move(weights));
  return d;
}

}  // namespace crucible::train

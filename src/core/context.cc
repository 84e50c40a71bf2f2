#include "crucible/core/context.h"

#include <algorithm>

namespace crucible {

const Json& StageServices::empty_object() {
  static const Json empty = Json::object();
  return empty;
}

const std::string& StageServices::empty_string() {
  static const std::string empty;
  return empty;
}
namespace {

std::string_view kind_name(Mutation::Kind kind) {
  switch (kind) {
    case Mutation::Kind::kMetric: return "metric";
    case Mutation::Kind::kArtifact: return "artifact";
    case Mutation::Kind::kState: return "state";
    case Mutation::Kind::kComplete: return "complete";
    case Mutation::Kind::kTrace: return "trace";
  }
  return "state";
}

std::optional<Mutation::Kind> kind_from_name(std::string_view name) {
  if (name == "metric") return Mutation::Kind::kMetric;
  if (name == "artifact") return Mutation::Kind::kArtifact;
  if (name == "state") return Mutation::Kind::kState;
  if (name == "complete") return Mutation::Kind::kComplete;
  if (name == "trace") return Mutation::Kind::kTrace;
  return std::nullopt;
}

const Json* find(const Context::Map& map, std::string_view key) {
  auto it = map.find(key);
  return it == map.end() ? nullptr : &it->second;
}

}  // namespace

Json delta_to_json(const Delta& delta) {
  Json out = Json::array();
  for (const Mutation& m : delta) {
    Json entry = {{"op", kind_name(m.kind)}, {"key", m.key}};
    if (m.kind != Mutation::Kind::kComplete && m.kind != Mutation::Kind::kTrace) {
      entry["value"] = m.value;
    }
    out.push_back(std::move(entry));
  }
  return out;
}

Result<Delta> delta_from_json(const Json& json) {
  if (!json.is_array()) {
    return make_error(ErrorCode::kDataLoss, "context delta is not an array");
  }
  Delta delta;
  delta.reserve(json.size());
  for (const Json& entry : json) {
    if (!entry.is_object() || !entry.contains("op") || !entry.contains("key") || !entry["op"].is_string() ||
        !entry["key"].is_string()) {
      return make_error(ErrorCode::kDataLoss, "malformed context delta entry: " + json_dump(entry));
    }
    auto kind = kind_from_name(entry["op"].get<std::string>());
    if (!kind) {
      return make_error(ErrorCode::kDataLoss, "unknown delta op: " + json_dump(entry["op"]));
    }
    Json value = entry.contains("value") ? entry["value"] : Json();
    delta.push_back(Mutation{*kind, entry["key"].get<std::string>(), std::move(value)});
  }
  return delta;
}

Context::Context(std::string experiment_id, RunId run_id, Json config)
    : experiment_id_(std::move(experiment_id)),
      run_id_(std::move(run_id)),
      config_(std::make_shared<const Json>(std::move(config))) {}

namespace {

// Writes value into map[key] and returns what was there before.
std::optional<Json> replace(Context::Map& map, const std::string& key, const Json& value) {
  auto [it, inserted] = map.try_emplace(key);
  std::optional<Json> previous;
  if (!inserted) previous = std::move(it->second);
  it->second = value;
  return previous;
}

}  // namespace

Context::Map& Context::writable(std::shared_ptr<Map>& map) {
  if (map.use_count() > 1) map = std::make_shared<Map>(*map);
  return *map;
}

void Context::share_history() {
  completed_.share();
  trace_.share();
}

void Context::put_metric(std::string key, Json value) {
  std::optional<Json> previous = replace(writable(metrics_), key, value);
  note(Mutation{Mutation::Kind::kMetric, std::move(key), std::move(value)}, std::move(previous));
}

const Json* Context::get_metric(std::string_view key) const { return find(*metrics_, key); }

Status Context::merge_metrics(const Json& values) {
  if (!values.is_object()) {
    return make_error(ErrorCode::kInvalidArgument, "merge_metrics expects an object, got " + json_type_name(values));
  }
  for (const auto& [key, value] : values.items()) put_metric(key, value);
  return {};
}

Status Context::update_metric(std::string_view key, const std::function<Json(const Json&)>& fn) {
  const Json* current = get_metric(key);
  if (current == nullptr) {
    return make_error(ErrorCode::kNotFound, "no metric '" + std::string(key) + "' to update");
  }
  put_metric(std::string(key), fn(*current));
  return {};
}

void Context::put_artifact(std::string key, Json value) {
  std::optional<Json> previous = replace(writable(artifacts_), key, value);
  note(Mutation{Mutation::Kind::kArtifact, std::move(key), std::move(value)}, std::move(previous));
}

const Json* Context::get_artifact(std::string_view key) const { return find(*artifacts_, key); }

void Context::assign(std::string key, Json value) {
  std::optional<Json> previous = replace(writable(state_), key, value);
  note(Mutation{Mutation::Kind::kState, std::move(key), std::move(value)}, std::move(previous));
}

const Json* Context::get(std::string_view key) const { return find(*state_, key); }

void Context::mark_stage_complete(std::string_view name) {
  if (stage_completed(name)) return;
  completed_.push_back(std::string(name));
  note(Mutation{Mutation::Kind::kComplete, std::string(name), Json()}, std::nullopt);
}

bool Context::stage_completed(std::string_view name) const { return completed_.contains(name); }

void Context::add_trace(std::string_view name) {
  trace_.push_back(std::string(name));
  note(Mutation{Mutation::Kind::kTrace, std::string(name), Json()}, std::nullopt);
}

void Context::push_loop(Json item, int64_t index) { loops_.push_back({std::move(item), index}); }

void Context::pop_loop() {
  if (!loops_.empty()) loops_.pop_back();
}

std::optional<int64_t> Context::index() const {
  if (loops_.empty()) return std::nullopt;
  return loops_.back().index;
}

void Context::note(Mutation m, std::optional<Json> previous) {
  // A step records a few mutations (at least its completion and trace): one allocation for them.
  if (delta_.capacity() == 0) {
    delta_.reserve(4);
    undo_.reserve(4);
  }
  undo_.push_back(std::move(previous));
  delta_.push_back(std::move(m));
}

Delta Context::take_delta() {
  Delta out;
  out.swap(delta_);
  undo_.clear();
  return out;
}

void Context::discard_delta() {
  auto restore = [](std::shared_ptr<Map>& shared, const std::string& key, std::optional<Json>& previous) {
    Map& map = writable(shared);
    if (previous)
      map[key] = std::move(*previous);
    else
      map.erase(key);
  };
  for (size_t i = delta_.size(); i-- > 0;) {
    Mutation& m = delta_[i];
    switch (m.kind) {
      case Mutation::Kind::kMetric: restore(metrics_, m.key, undo_[i]); break;
      case Mutation::Kind::kArtifact: restore(artifacts_, m.key, undo_[i]); break;
      case Mutation::Kind::kState: restore(state_, m.key, undo_[i]); break;
      case Mutation::Kind::kComplete: completed_.pop_back(); break;
      case Mutation::Kind::kTrace: trace_.pop_back(); break;
    }
  }
  delta_.clear();
  undo_.clear();
}

void Context::apply_one(const Mutation& m) {
  switch (m.kind) {
    case Mutation::Kind::kMetric: writable(metrics_)[m.key] = m.value; break;
    case Mutation::Kind::kArtifact: writable(artifacts_)[m.key] = m.value; break;
    case Mutation::Kind::kState: writable(state_)[m.key] = m.value; break;
    case Mutation::Kind::kComplete:
      if (!stage_completed(m.key)) completed_.push_back(m.key);
      break;
    case Mutation::Kind::kTrace: trace_.push_back(m.key); break;
  }
}

void Context::apply(const Delta& delta) {
  for (const Mutation& m : delta) apply_one(m);
}

void Context::record(Delta delta) {
  for (Mutation& m : delta) {
    switch (m.kind) {
      case Mutation::Kind::kMetric: put_metric(std::move(m.key), std::move(m.value)); break;
      case Mutation::Kind::kArtifact: put_artifact(std::move(m.key), std::move(m.value)); break;
      case Mutation::Kind::kState: assign(std::move(m.key), std::move(m.value)); break;
      case Mutation::Kind::kComplete: mark_stage_complete(m.key); break;
      case Mutation::Kind::kTrace: add_trace(m.key); break;
    }
  }
}

Delta Context::changes_since(const Context& base, bool values) const {
  Delta out;
  if (values) {
    auto diff = [&out](const std::shared_ptr<Map>& from, const std::shared_ptr<Map>& to, Mutation::Kind kind) {
      if (from == to) return;  // still shared: nothing written since the copy
      for (const auto& [k, v] : *to) {
        auto it = from->find(k);
        if (it == from->end() || it->second != v) out.push_back({kind, k, v});
      }
    };
    diff(base.metrics_, metrics_, Mutation::Kind::kMetric);
    diff(base.artifacts_, artifacts_, Mutation::Kind::kArtifact);
    diff(base.state_, state_, Mutation::Kind::kState);
  }
  // A copy's history starts with its base's: only what came after can be new.
  completed_.for_each_from(base.completed_.size(), [&](const std::string& s) {
    if (!base.stage_completed(s)) out.push_back({Mutation::Kind::kComplete, s, Json()});
  });
  trace_.for_each_from(base.trace_.size(), [&](const std::string& s) {
    out.push_back({Mutation::Kind::kTrace, s, Json()});
  });
  return out;
}

std::optional<SuspendRequest> Context::take_suspend() {
  std::optional<SuspendRequest> out;
  out.swap(suspend_);
  return out;
}

Json Context::to_json() const {
  auto map_json = [](const Map& map) {
    Json out = Json::object();
    for (const auto& [k, v] : map) out[k] = v;
    return out;
  };
  return Json{{"run_id", run_id_.str()},
              {"experiment_id", experiment_id_},
              {"config", *config_},
              {"metrics", map_json(*metrics_)},
              {"artifacts", map_json(*artifacts_)},
              {"state", map_json(*state_)},
              {"completed_stages", completed_.to_vector()},
              {"trace", trace_.to_vector()}};
}

}  // namespace crucible

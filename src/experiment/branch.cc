#include "crucible/experiment/branch.h"

#include "crucible/core/hash.h"

namespace crucible {

std::string config_id_of(const Json& config) {
  if (config.is_object()) {
    auto it = config.find("config_id");
    if (it != config.end() && !it->is_null()) return it->is_string() ? it->get<std::string>() : json_dump(*it);
  }
  Json without = config;
  if (without.is_object()) without.erase("config_id");
  return sha256_hex(json_dump(without)).substr(0, 16);
}

std::string_view branch_status_name(BranchStatus status) {
  switch (status) {
    case BranchStatus::kPending: return "pending";
    case BranchStatus::kSuccess: return "success";
    case BranchStatus::kFailed: return "failed";
    case BranchStatus::kSkipped: return "skipped";
  }
  return "pending";
}

std::optional<BranchStatus> parse_branch_status(std::string_view name) {
  for (BranchStatus s :
       {BranchStatus::kPending, BranchStatus::kSuccess, BranchStatus::kFailed, BranchStatus::kSkipped}) {
    if (branch_status_name(s) == name) return s;
  }
  return std::nullopt;
}

Branch::Branch(Json config, Clock& clock, std::string config_id)
    : config_id_(config_id.empty() ? config_id_of(config) : std::move(config_id)),
      config_(std::move(config)),
      start_(clock.monotonic()) {}

std::optional<std::chrono::microseconds> Branch::duration() const {
  if (restored_duration_us_ >= 0) return std::chrono::microseconds(restored_duration_us_);
  if (!end_) return std::nullopt;
  return std::chrono::duration_cast<std::chrono::microseconds>(*end_ - start_);
}

Status Branch::finalize(BranchStatus status, Clock& clock) {
  if (status_ != BranchStatus::kPending) {
    return make_error(ErrorCode::kFailedPrecondition,
                      "branch " + config_id_ + " is already finalised as " + std::string(branch_status_name(status_)));
  }
  status_ = status;
  end_ = clock.monotonic();
  return {};
}

Status Branch::mark_success(Json output, Clock& clock) {
  CRUCIBLE_RETURN_IF_ERROR(finalize(BranchStatus::kSuccess, clock));
  output_ = std::move(output);
  return {};
}

Status Branch::mark_failure(Error error, Clock& clock) {
  CRUCIBLE_RETURN_IF_ERROR(finalize(BranchStatus::kFailed, clock));
  error_ = std::move(error);
  return {};
}

Status Branch::mark_skipped(std::string reason, Clock& clock) {
  CRUCIBLE_RETURN_IF_ERROR(finalize(BranchStatus::kSkipped, clock));
  error_ = Error(ErrorCode::kCancelled, std::move(reason));
  return {};
}

Json Branch::to_json() const {
  Json j{{"config_id", config_id_}, {"config", config_}, {"status", branch_status_name(status_)}};
  auto d = duration();
  j["duration_ms"] = d ? Json(static_cast<double>(d->count()) / 1000.0) : Json();
  j["output"] = output_;
  j["error"] = error_ ? Json{{"code", error_code_name(error_->code())}, {"message", error_->message()}} : Json();
  return j;
}

Result<Branch> Branch::from_json(const Json& json) {
  if (!json.is_object() || !json.contains("config_id") || !json["config_id"].is_string()) {
    return make_error(ErrorCode::kInvalidArgument, "branch record: expected an object with a string config_id");
  }
  Branch b;
  b.config_id_ = json["config_id"].get<std::string>();
  b.config_ = json.value("config", Json::object());
  auto status = parse_branch_status(json.value("status", "pending"));
  if (!status)
    return make_error(ErrorCode::kInvalidArgument,
                      "branch record: unknown status " + json_dump(json.value("status", Json())));
  b.status_ = *status;
  if (json.contains("duration_ms") && json["duration_ms"].is_number()) {
    b.restored_duration_us_ = static_cast<int64_t>(json["duration_ms"].get<double>() * 1000.0);
  }
  b.output_ = json.value("output", Json());
  if (json.contains("error") && json["error"].is_object()) {
    auto code = parse_error_code(json["error"].value("code", "unknown"));
    b.error_ = Error(code.value_or(ErrorCode::kUnknown), json["error"].value("message", ""));
  }
  return b;
}

std::vector<const Branch*> BranchSet::successful() const {
  std::vector<const Branch*> out;
  for (const Branch& b : branches_) {
    if (b.status() == BranchStatus::kSuccess) out.push_back(&b);
  }
  return out;
}

std::vector<const Branch*> BranchSet::failed() const {
  std::vector<const Branch*> out;
  for (const Branch& b : branches_) {
    if (b.status() == BranchStatus::kFailed) out.push_back(&b);
  }
  return out;
}

const Branch* BranchSet::by_config_id(std::string_view id) const {
  for (const Branch& b : branches_) {
    if (b.config_id() == id) return &b;
  }
  return nullptr;
}

Json BranchSet::to_json() const {
  Json out = Json::array();
  for (const Branch& b : branches_) out.push_back(b.to_json());
  return out;
}

}  // namespace crucible

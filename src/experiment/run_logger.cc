#include "crucible/experiment/run_logger.h"

#include <cerrno>
#include <cstring>

#include "crucible/journal/journal.h"

namespace crucible {
namespace {

Status unknown_run(const std::string& run) {
  return make_error(ErrorCode::kNotFound, "run logger: no run '" + run + "' (call start_run first)");
}

Status check_metrics(const Json& metrics) {
  if (!metrics.is_object()) return make_error(ErrorCode::kInvalidArgument, "run logger: metrics must be an object");
  return {};
}

}  // namespace

// InMemoryRunLogger

Result<std::string> InMemoryRunLogger::start_run(const std::string& experiment, const std::string& config_id) {
  std::lock_guard lock(mu_);
  std::string id = experiment + "/" + config_id + "#" + std::to_string(next_++);
  Run run;
  run.experiment = experiment;
  run.config_id = config_id;
  runs_.emplace(id, std::move(run));
  return id;
}

Result<InMemoryRunLogger::Run*> InMemoryRunLogger::find(const std::string& run) {
  auto it = runs_.find(run);
  if (it == runs_.end()) return make_error(unknown_run(run).error());
  return &it->second;
}

Status InMemoryRunLogger::log_params(const std::string& run, const Json& params) {
  std::lock_guard lock(mu_);
  CRUCIBLE_ASSIGN_OR_RETURN(auto r, find(run));
  if (params.is_object())
    r->params.update(params);
  else
    r->params["value"] = params;
  return {};
}

Status InMemoryRunLogger::log_metrics(const std::string& run, const Json& metrics, std::optional<int64_t> step) {
  CRUCIBLE_RETURN_IF_ERROR(check_metrics(metrics));
  std::lock_guard lock(mu_);
  CRUCIBLE_ASSIGN_OR_RETURN(auto r, find(run));
  r->metrics.push_back(Json{{"step", step ? Json(*step) : Json()}, {"values", metrics}});
  return {};
}

Status InMemoryRunLogger::log_branch(const std::string& run, const Branch& branch) {
  std::lock_guard lock(mu_);
  CRUCIBLE_ASSIGN_OR_RETURN(auto r, find(run));
  r->branch = branch.to_json();
  return {};
}

Status InMemoryRunLogger::end_run(const std::string& run, BranchStatus status) {
  std::lock_guard lock(mu_);
  CRUCIBLE_ASSIGN_OR_RETURN(auto r, find(run));
  if (r->ended) return make_error(ErrorCode::kFailedPrecondition, "run logger: run '" + run + "' already ended");
  r->ended = true;
  r->status = status;
  return {};
}

std::map<std::string, InMemoryRunLogger::Run> InMemoryRunLogger::runs() const {
  std::lock_guard lock(mu_);
  return runs_;
}

size_t InMemoryRunLogger::run_count() const {
  std::lock_guard lock(mu_);
  return runs_.size();
}

// JsonlRunLogger

Result<std::unique_ptr<JsonlRunLogger>> JsonlRunLogger::open(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "a");
  if (f == nullptr) {
    return make_error(ErrorCode::kInvalidArgument,
                      "run log '" + path + "': cannot open for appending: " + std::strerror(errno));
  }
  return std::unique_ptr<JsonlRunLogger>(new JsonlRunLogger(f, path));
}

JsonlRunLogger::~JsonlRunLogger() {
  if (file_ != nullptr) std::fclose(file_);
}

Status JsonlRunLogger::write(Json line) {
  std::string text = json_dump(line) + "\n";
  if (std::fwrite(text.data(), 1, text.size(), file_) != text.size() || std::fflush(file_) != 0) {
    return make_error(ErrorCode::kDataLoss, "run log '" + path_ + "': write failed: " + std::strerror(errno));
  }
  return {};
}

Result<std::string> JsonlRunLogger::start_run(const std::string& experiment, const std::string& config_id) {
  std::lock_guard lock(mu_);
  std::string id = experiment + "/" + config_id + "#" + std::to_string(next_++);
  auto s = write(Json{{"event", "start_run"}, {"run", id}, {"experiment", experiment}, {"config_id", config_id}});
  if (!s) return make_error(s.error());
  return id;
}

Status JsonlRunLogger::log_params(const std::string& run, const Json& params) {
  std::lock_guard lock(mu_);
  return write(Json{{"event", "log_params"}, {"run", run}, {"params", params}});
}

Status JsonlRunLogger::log_metrics(const std::string& run, const Json& metrics, std::optional<int64_t> step) {
  CRUCIBLE_RETURN_IF_ERROR(check_metrics(metrics));
  std::lock_guard lock(mu_);
  return write(
      Json{{"event", "log_metrics"}, {"run", run}, {"metrics", metrics}, {"step", step ? Json(*step) : Json()}});
}

Status JsonlRunLogger::log_branch(const std::string& run, const Branch& branch) {
  std::lock_guard lock(mu_);
  return write(Json{{"event", "log_branch"}, {"run", run}, {"branch", branch.to_json()}});
}

Status JsonlRunLogger::end_run(const std::string& run, BranchStatus status) {
  std::lock_guard lock(mu_);
  return write(Json{{"event", "end_run"}, {"run", run}, {"status", branch_status_name(status)}});
}

// JournalRunLogger

JournalRunLogger::JournalRunLogger(Journal& journal, RunId run, std::string prefix)
    : journal_(journal), run_(std::move(run)), prefix_(std::move(prefix)) {}

std::string JournalRunLogger::branch_key(const std::string& prefix, const std::string& config_id) {
  return StepKey::from_string(prefix).branch(config_id).str();
}

Result<std::string> JournalRunLogger::start_run(const std::string& experiment, const std::string& config_id) {
  std::string prefix = prefix_.empty() ? "/" + experiment : prefix_;
  std::string id = branch_key(prefix, config_id);
  std::lock_guard lock(mu_);
  if (!pending_.emplace(id, Pending{}).second) {
    return make_error(ErrorCode::kAlreadyExists, "run logger: branch '" + id + "' is already running");
  }
  return id;
}

Status JournalRunLogger::log_params(const std::string& run, const Json& params) {
  std::lock_guard lock(mu_);
  auto it = pending_.find(run);
  if (it == pending_.end()) return unknown_run(run);
  if (params.is_object()) it->second.params.update(params);
  return {};
}

Status JournalRunLogger::log_metrics(const std::string& run, const Json& metrics, std::optional<int64_t>) {
  CRUCIBLE_RETURN_IF_ERROR(check_metrics(metrics));
  std::lock_guard lock(mu_);
  auto it = pending_.find(run);
  if (it == pending_.end()) return unknown_run(run);
  it->second.metrics.update(metrics);
  return {};
}

Status JournalRunLogger::log_branch(const std::string& run, const Branch& branch) {
  std::lock_guard lock(mu_);
  auto it = pending_.find(run);
  if (it == pending_.end()) return unknown_run(run);
  it->second.branch = branch.to_json();
  return {};
}

Status JournalRunLogger::end_run(const std::string& run, BranchStatus status) {
  Pending p;
  {
    std::lock_guard lock(mu_);
    auto it = pending_.find(run);
    if (it == pending_.end()) return unknown_run(run);
    p = std::move(it->second);
    pending_.erase(it);
  }
  Record r;
  r.type = RecordType::kDecision;
  r.run_id = run_;
  r.key = StepKey::from_string(run + "#branch");
  Json body = p.branch.is_null() ? Json::object() : std::move(p.branch);
  body["status"] = branch_status_name(status);
  body["params"] = std::move(p.params);
  body["metrics"] = std::move(p.metrics);
  r.payload = std::move(body);
  return journal_.append(std::move(r), Durability::kBatched);
}

}  // namespace crucible

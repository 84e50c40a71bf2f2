#include "crucible/train/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "crucible/core/file.h"
#include "crucible/core/hash.h"

namespace crucible::train {

Json CheckpointRecord::to_json() const {
  return Json{{"name", name},
              {"step", step},
              {"epoch", epoch},
              {"batch", batch},
              {"elapsed_tokens", elapsed_tokens},
              {"state_path", state_path},
              {"state_sha256", state_sha256},
              {"sampler_path", sampler_path},
              {"final", final},
              {"pruned", pruned},
              {"loop", loop}};
}

Result<CheckpointRecord> CheckpointRecord::from_json(const Json& j, const std::string& where) {
  auto bad = [&](const char* key, const char* expected) {
    return make_error(Error(ErrorCode::kDataLoss, where + ": field '" + key + "' is not " + expected).with_field(key));
  };
  if (!j.is_object()) return make_error(ErrorCode::kDataLoss, where + ": expected a JSON object");
  CheckpointRecord r;
  for (auto [key, into] : {std::pair{"step", &r.step}, std::pair{"epoch", &r.epoch}, std::pair{"batch", &r.batch},
                           std::pair{"elapsed_tokens", &r.elapsed_tokens}}) {
    if (!j.contains(key) || !j[key].is_number_integer()) return bad(key, "an integer");
    *into = j[key].get<int64_t>();
  }
  for (auto [key, into] : {std::pair{"name", &r.name}, std::pair{"state_path", &r.state_path},
                           std::pair{"state_sha256", &r.state_sha256}, std::pair{"sampler_path", &r.sampler_path}}) {
    if (!j.contains(key) || !j[key].is_string()) return bad(key, "a string");
    *into = j[key].get<std::string>();
  }
  for (auto [key, into] : {std::pair{"final", &r.final}, std::pair{"pruned", &r.pruned}}) {
    if (!j.contains(key) || !j[key].is_boolean()) return bad(key, "true or false");
    *into = j[key].get<bool>();
  }
  r.loop = j.value("loop", Json::object());
  return r;
}

Result<std::string> file_sha256(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorCode::kNotFound, "'" + path + "' cannot be opened");
  std::ostringstream s;
  s << in.rdbuf();
  return sha256_hex(s.str());
}

Result<std::vector<CheckpointRecord>> CheckpointStore::records() const {
  std::vector<CheckpointRecord> out;
  std::ifstream in(index_path());
  if (!in) return out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    const std::string where = index_path() + ":" + std::to_string(n);
    auto j = parse_json(line);
    if (!j) return make_error(ErrorCode::kDataLoss, where + ": " + j.error().message());
    CRUCIBLE_ASSIGN_OR_RETURN(auto r, CheckpointRecord::from_json(*j, where));
    out.push_back(std::move(r));
  }
  return out;
}

Result<std::optional<CheckpointRecord>> CheckpointStore::latest() const {
  CRUCIBLE_ASSIGN_OR_RETURN(auto all, records());
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (it->state_path.empty() || it->pruned) continue;
    auto hash = file_sha256(it->state_path);
    if (!hash) {
      return make_error(ErrorCode::kDataLoss, "checkpoint '" + it->name + "' in " + index_path() + ": its state '" +
                                                  it->state_path + "' is missing");
    }
    if (*hash != it->state_sha256) {
      return make_error(ErrorCode::kDataLoss, "checkpoint '" + it->name + "' in " + index_path() + ": its state '" +
                                                  it->state_path + "' does not match its SHA-256");
    }
    return std::optional<CheckpointRecord>(*it);
  }
  return std::optional<CheckpointRecord>();
}

Status CheckpointStore::write(const std::vector<CheckpointRecord>& records) const {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return make_error(ErrorCode::kUnavailable, "cannot create '" + dir_ + "': " + ec.message());
  std::string text;
  for (const CheckpointRecord& r : records) text += json_dump(r.to_json()) + "\n";
  return write_file_atomically(index_path(), text);
}

Status CheckpointStore::append(CheckpointRecord record) {
  if (!record.state_path.empty()) {
    CRUCIBLE_ASSIGN_OR_RETURN(record.state_sha256, file_sha256(record.state_path));
  }
  CRUCIBLE_ASSIGN_OR_RETURN(auto all, records());
  all.push_back(std::move(record));
  return write(all);
}

Result<std::vector<std::string>> CheckpointStore::keep_last(size_t keep) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto all, records());
  std::vector<std::string> deleted;
  size_t kept = 0;
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (it->final || it->pruned || it->state_path.empty()) continue;
    if (kept < keep) {
      ++kept;
      continue;
    }
    for (const std::string& path : {it->state_path, it->sampler_path}) {
      std::error_code ec;
      if (!path.empty() && std::filesystem::remove(path, ec)) deleted.push_back(path);
    }
    it->pruned = true;
  }
  if (!deleted.empty() || kept < all.size()) CRUCIBLE_RETURN_IF_ERROR(write(all));
  return deleted;
}

}  // namespace crucible::train

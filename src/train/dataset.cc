#include "crucible/train/dataset.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>

#include "crucible/core/random.h"

namespace crucible::train {

namespace {

Result<std::string> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorCode::kNotFound, "dataset '" + path + "' cannot be opened");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
  }
  return lines;
}

bool is_fortune_file(const std::vector<std::string>& lines) {
  return std::find(lines.begin(), lines.end(), "%") != lines.end();
}

void add_fortunes(const std::vector<std::string>& lines, const std::string& path, std::vector<Example>& out) {
  std::string entry;
  size_t first = 0;
  auto flush = [&] {
    while (!entry.empty() && entry.back() == '\n') entry.pop_back();
    if (!entry.empty()) out.push_back(Example{Json{{"text", entry}}, path + ":" + std::to_string(first + 1)});
    entry.clear();
  };
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i] == "%") {
      flush();
      continue;
    }
    if (entry.empty()) first = i;
    entry += lines[i] + "\n";
  }
  flush();
}

}  // namespace

Result<std::string> Example::text(const char* key) const {
  if (!fields.is_object() || !fields.contains(key) || !fields[key].is_string()) {
    return field_error(key, source + ": expected a string field '" + key + "'");
  }
  return fields[key].get<std::string>();
}

Result<DatasetStore> DatasetStore::load(const std::string& path) {
  CRUCIBLE_ASSIGN_OR_RETURN(std::string text, read_all(path));
  std::vector<std::string> lines = lines_of(text);
  std::vector<Example> examples;
  if (path.ends_with(".jsonl")) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (lines[i].find_first_not_of(" \t") == std::string::npos) continue;
      const std::string where = path + ":" + std::to_string(i + 1);
      auto parsed = parse_json(lines[i]);
      if (!parsed) {
        // The column of the fault; a nesting-depth error is reported before any parse.
        size_t column = 1;
        if (parsed.error().code() == ErrorCode::kInvalidArgument) {
          try {
            Json ignored = Json::parse(lines[i]);
            (void)ignored;
          } catch (const Json::parse_error& e) {
            column = std::max<size_t>(e.byte, 1);
          }
        }
        return make_error(ErrorCode::kInvalidArgument,
                          where + ":" + std::to_string(column) + ": " + parsed.error().message());
      }
      Json j = std::move(*parsed);
      if (!j.is_object()) {
        return make_error(ErrorCode::kInvalidArgument,
                          where + ":1: expected a JSON object on each line, got " + json_type_name(j));
      }
      examples.push_back(Example{std::move(j), where});
    }
  } else if (is_fortune_file(lines)) {
    add_fortunes(lines, path, examples);
  } else {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (lines[i].find_first_not_of(" \t") == std::string::npos) continue;
      examples.push_back(Example{Json{{"text", lines[i]}}, path + ":" + std::to_string(i + 1)});
    }
  }
  if (examples.empty()) return make_error(ErrorCode::kInvalidArgument, "dataset '" + path + "' holds no examples");
  return DatasetStore(std::move(examples));
}

Result<DatasetStore> DatasetStore::load_fortunes(const std::string& dir, size_t max_chars) {
  std::error_code ec;
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::filesystem::path& p = entry.path();
    // The text files; .dat indexes and .u8 links sit beside them.
    if (entry.is_regular_file() && !p.has_extension()) files.push_back(p);
  }
  if (ec) return make_error(ErrorCode::kNotFound, "fortunes folder '" + dir + "' cannot be read: " + ec.message());
  std::sort(files.begin(), files.end());
  std::vector<Example> examples;
  size_t chars = 0;
  for (const auto& p : files) {
    CRUCIBLE_ASSIGN_OR_RETURN(std::string text, read_all(p.string()));
    const size_t before = examples.size();
    add_fortunes(lines_of(text), p.string(), examples);
    for (size_t i = before; i < examples.size(); ++i) chars += examples[i].fields["text"].get<std::string>().size();
    if (max_chars && chars >= max_chars) break;
  }
  if (examples.empty()) {
    return make_error(ErrorCode::kNotFound, "fortunes folder '" + dir + "' holds no fortunes (install 'fortunes')");
  }
  return DatasetStore(std::move(examples));
}

std::vector<size_t> DatasetStore::order(uint64_t seed, int64_t epoch) const {
  std::vector<size_t> idx(examples_.size());
  std::iota(idx.begin(), idx.end(), size_t{0});
  // Fisher-Yates over SplitMix64: the same permutation with every standard library.
  SeededRandom rng(splitmix64(seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch)));
  for (size_t i = idx.size(); i > 1; --i) std::swap(idx[i - 1], idx[rng.uniform(i)]);
  return idx;
}

std::pair<DatasetStore, DatasetStore> DatasetStore::split(size_t eval_count, uint64_t seed) const {
  std::vector<size_t> idx = order(seed, -1);
  eval_count = std::min(eval_count, idx.size());
  std::vector<Example> train, eval;
  // The training part keeps the file's order, so its epochs shuffle it the same way.
  std::vector<size_t> eval_idx(idx.end() - static_cast<std::ptrdiff_t>(eval_count), idx.end());
  std::vector<bool> in_eval(examples_.size(), false);
  for (size_t i : eval_idx) in_eval[i] = true;
  for (size_t i = 0; i < examples_.size(); ++i) (in_eval[i] ? eval : train).push_back(examples_[i]);
  return {DatasetStore(std::move(train)), DatasetStore(std::move(eval))};
}

std::vector<const Example*> DatasetStore::batch(uint64_t seed, int64_t epoch, size_t index, size_t batch_size) const {
  std::vector<size_t> idx = order(seed, epoch);
  std::vector<const Example*> out;
  for (size_t k = index * batch_size; k < (index + 1) * batch_size && k < idx.size(); ++k) {
    out.push_back(&examples_[idx[k]]);
  }
  return out;
}

}  // namespace crucible::train

#include "experiments_view.h"

#include <algorithm>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "crucible/experiment/comparison.h"

namespace crucible::cli {
namespace {

std::string short_value(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.4g", v.get<double>());
    return buf;
  }
  return json_dump(v);
}

// The config keys (dotted) whose values differ between branches: what a reader compares.
std::vector<std::string> varying_keys(const std::vector<Json>& branches) {
  std::map<std::string, std::set<std::string>> values;
  std::function<void(const Json&, const std::string&)> walk = [&](const Json& node, const std::string& prefix) {
    for (const auto& [k, v] : node.items()) {
      std::string path = prefix.empty() ? k : prefix + "." + k;
      if (v.is_object())
        walk(v, path);
      else
        values[path].insert(json_dump(v));
    }
  };
  for (const Json& b : branches) walk(b.value("config", Json::object()), "");
  std::vector<std::string> out;
  for (const auto& [k, v] : values) {
    if (v.size() > 1 && k != "config_id") out.push_back(k);
  }
  return out;
}

const Json* at_path(const Json& root, const std::string& path) {
  const Json* node = &root;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!node->is_object() || !node->contains(part)) return nullptr;
    node = &(*node)[part];
    if (dot == std::string::npos) return node;
    start = dot + 1;
  }
}

}  // namespace

void print_experiments(const RunReport& report) {
  for (auto [prefix, branches] : report.experiments) {
    // Config order reads better than completion order.
    std::stable_sort(branches.begin(), branches.end(), [](const Json& a, const Json& b) {
      return json_dump(a.value("config", Json())) < json_dump(b.value("config", Json()));
    });
    int ok = 0;
    for (const Json& b : branches) ok += b.value("status", "") == "success" ? 1 : 0;
    std::printf("\nexperiment %s: %zu branches, %d succeeded, %zu failed\n", prefix.c_str(), branches.size(), ok,
                branches.size() - static_cast<size_t>(ok));
    std::vector<std::string> keys = varying_keys(branches);
    std::string header = "CONFIG_ID         ";
    for (const std::string& k : keys) header += std::string(k.size() < 10 ? 10 - k.size() : 0, ' ') + k + " ";
    header += "STATUS    DURATION    METRICS";
    std::printf("%s\n", header.c_str());
    for (const Json& b : branches) {
      const Json config = b.value("config", Json::object());
      const Json metrics_json = b.value("metrics", Json::object());
      std::string line = b.value("config_id", std::string());
      line.resize(std::max<size_t>(line.size() + 1, 18), ' ');
      for (const std::string& k : keys) {
        const Json* v = at_path(config, k);
        std::string text = v != nullptr ? short_value(*v) : "-";
        size_t width = std::max<size_t>(k.size(), 10);
        line += std::string(text.size() < width ? width - text.size() : 0, ' ') + text + " ";
      }
      char buf[64];
      std::snprintf(buf, sizeof(buf), "%-9s %9.1fms   ", b.value("status", "").c_str(), b.value("duration_ms", 0.0));
      line += buf;
      std::string metrics;
      for (const auto& [k, v] : metrics_json.items()) {
        metrics += (metrics.empty() ? "" : " ") + k + "=" + short_value(v);
      }
      if (b.value("status", "") != "success" && b.contains("error") && b["error"].is_object()) {
        metrics += (metrics.empty() ? "" : " ") + std::string("error: ") + b["error"].value("message", "");
      }
      std::printf("%s%s\n", line.c_str(), metrics.c_str());
    }
  }
  for (const auto& [key, c] : report.comparisons) {
    std::printf("\ncomparison %s (metric %s, alpha %s)\n", key.c_str(), c.value("metric", "").c_str(),
                short_value(c.value("alpha", Json(0.05))).c_str());
    std::printf("%s", comparison_markdown(c).c_str());
    if (c.contains("files")) std::printf("files: %s\n", c["files"].value("svg", "").c_str());
  }
}

}  // namespace crucible::cli

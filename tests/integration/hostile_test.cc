// tests/hostile/cases.json: hostile inputs, each run through the `crucible` binary with the exit
// code and the message fragment it must produce. None may crash, hang or grow without bound.
// In arguments and files, {{repeat N TEXT}} stands for TEXT N times, {{byte XX}} for the raw byte
// 0xXX (text that is not UTF-8) and {{example}} for the examples folder.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "crucible/core/json.h"
#include "process.h"

namespace crucible::integration {
namespace {

namespace fs = std::filesystem;

Json load_cases() {
  std::ifstream in("tests/hostile/cases.json");
  std::stringstream buf;
  buf << in.rdbuf();
  auto doc = parse_json(buf.str());
  return doc ? (*doc)["cases"] : Json::array();
}

std::string expand(const std::string& text) {
  std::string out;
  size_t pos = 0;
  while (true) {
    size_t open = text.find("{{", pos);
    if (open == std::string::npos) break;
    size_t close = text.find("}}", open);
    if (close == std::string::npos) break;
    out += text.substr(pos, open - pos);
    std::string inner = text.substr(open + 2, close - open - 2);
    if (inner == "example") {
      out += (fs::current_path() / "examples").string();
    } else if (inner.rfind("byte ", 0) == 0) {
      out += static_cast<char>(std::stoi(inner.substr(5), nullptr, 16));
    } else if (inner.rfind("repeat ", 0) == 0) {
      size_t space = inner.find(' ', 7);
      size_t n = std::stoul(inner.substr(7, space - 7));
      std::string unit = inner.substr(space + 1);
      for (size_t i = 0; i < n; ++i) out += unit;
    }
    // A `}` right after the directive belongs to the text (e.g. "{{repeat 3 ]}}}").
    pos = close + 2;
  }
  return out + text.substr(pos);
}

class Hostile : public ::testing::TestWithParam<Json> {};

TEST_P(Hostile, FailsCleanlyWithItsMessage) {
  const Json& c = GetParam();
  fs::path dir =
      fs::temp_directory_path() / ("crucible-hostile-" + std::to_string(getpid()) + "-" + c["name"].get<std::string>());
  fs::remove_all(dir);
  fs::create_directories(dir);
  if (c.contains("files")) {
    for (const auto& [path, content] : c["files"].items()) {
      fs::create_directories((dir / path).parent_path());
      std::ofstream(dir / path) << expand(content.get<std::string>());
    }
  }
  auto run = [&](const Json& args) {
    std::vector<std::string> argv;
    if (!c.value("args_no_journal", false)) argv = {"--journal", (dir / "journal.db").string()};
    for (const Json& a : args) argv.push_back(expand(a.get<std::string>()));
    Child child = spawn_crucible(argv, (dir / "stdout").string(), (dir / "stderr").string(), dir.string());
    int code = wait_child(child);
    return Output{code, slurp(child.out_path), slurp(child.err_path)};
  };
  for (const Json& setup : c.value("setup", Json::array())) ASSERT_EQ(run(setup).code, 0) << setup.dump();
  Output o = run(c["args"]);
  EXPECT_EQ(o.code, c["exit"].get<int>()) << o.err.substr(0, 2000);
  if (c.contains("stderr")) {
    EXPECT_NE(o.err.find(c["stderr"].get<std::string>()), std::string::npos) << o.err.substr(0, 2000);
  }
  if (c.contains("stdout")) {
    EXPECT_NE(o.out.find(c["stdout"].get<std::string>()), std::string::npos) << o.out.substr(0, 2000);
  }
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Cases, Hostile, ::testing::ValuesIn(load_cases().get<std::vector<Json>>()),
                         [](const ::testing::TestParamInfo<Json>& param) {
                           return param.param["name"].get<std::string>();
                         });

}  // namespace
}  // namespace crucible::integration

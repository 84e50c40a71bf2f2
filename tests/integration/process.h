// Helpers for integration tests that run the built `crucible` binary in a child process.
#pragma once

#include <string>
#include <vector>

#include "crucible/testing/child_process.h"

namespace crucible::integration {

using testing::Child;
using testing::lines_of;
using testing::process_alive;
using testing::slurp;
using testing::wait_child;

inline Child spawn_crucible(const std::vector<std::string>& args, const std::string& out_path,
                            const std::string& err_path, const std::string& cwd = "") {
  return testing::spawn_program(CRUCIBLE_BIN, args, out_path, err_path, cwd);
}

struct Output {
  int code;
  std::string out;
  std::string err;
};

inline Output run_crucible(const std::vector<std::string>& args, const std::string& scratch) {
  Child c = spawn_crucible(args, scratch + "/stdout", scratch + "/stderr");
  int code = wait_child(c);
  return Output{code, slurp(c.out_path), slurp(c.err_path)};
}

}  // namespace crucible::integration

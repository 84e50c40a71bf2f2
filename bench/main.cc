// crucible-bench: the benchmarks behind `crucible bench`, kept out of the product binary so that
// it links no test server. Prints one JSON object per benchmark.
#include <iostream>

#include <CLI/CLI.hpp>

#include "benchmarks.h"

int main(int argc, char** argv) {
  using namespace crucible;
  CLI::App app{"crucible-bench runs one benchmark and prints JSON with its raw baseline and goals."};
  std::string which, scenarios, postgres;
  bool quick = false, json = false;
  uint64_t random = 0, seed = 1;
  app.add_option("which", which, "dispatch, journal, journal-postgres, fleet, hedging, experiments, llm or serve")
      ->required();
  app.add_option("--postgres", postgres,
                 "journal-postgres and fleet: a server to measure (default: a throwaway cluster)");
  app.add_option("--scenarios", scenarios, "hedging: more scenarios from a JSON file (docs/hedging.md)");
  app.add_flag("--json", json, "print JSON (the default)");
  app.add_flag("--quick", quick, "a shorter run, for CI smoke tests");
  app.add_option("--random", random, "hedging: also run this many random scenarios (docs/hedging.md)");
  app.add_option("--seed", seed, "hedging: the seed of the random scenarios (default 1)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  Result<Json> out =
      make_error(ErrorCode::kInvalidArgument,
                 "unknown benchmark '" + which +
                     "'; expected dispatch, journal, journal-postgres, fleet, hedging, experiments, llm or serve");
  if (which == "dispatch")
    out = bench::run_dispatch(quick);
  else if (which == "journal")
    out = bench::run_journal(quick);
  else if (which == "journal-postgres")
    out = bench::run_journal_postgres(quick, postgres);
  else if (which == "fleet")
    out = bench::run_fleet(quick, postgres);
  else if (which == "hedging")
    out = bench::run_hedging(quick, scenarios, random, seed);
  else if (which == "experiments")
    out = bench::run_experiments(quick);
  else if (which == "llm")
    out = bench::run_llm(quick);
  else if (which == "serve")
    out = bench::run_serve(quick);
  if (!out) {
    std::cerr << "crucible-bench: " << out.error().message() << "\n";
    return out.error().code() == ErrorCode::kInvalidArgument ? 2 : 1;
  }
  std::cout << json_dump(*out, 2) << std::endl;
  return 0;
}

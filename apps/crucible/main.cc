// crucible: load, validate and run pipelines as durable workflows.
#include <CLI/CLI.hpp>

#include "commands.h"

int main(int argc, char** argv) {
  using namespace crucible::cli;
  CLI::App app{"Crucible runs AI experiment pipelines as durable, reliability-aware workflows."};
  app.require_subcommand(1);
  app.fallthrough();  // global options may follow the subcommand too
  GlobalOptions g;
  app.add_option("--journal", g.journal, "journal file (default $CRUCIBLE_JOURNAL or .crucible/journal.db)");
  app.add_option("--events", g.events_file, "append telemetry events as JSON lines to this file");
  app.add_flag("--quiet,-q", g.quiet, "no progress output");

  RunArgs run;
  auto* run_cmd = app.add_subcommand("run", "run a pipeline (an existing --run-id resumes instead)");
  run_cmd->add_option("file", run.file, "pipeline YAML")->required();
  run_cmd->add_option("--set", run.sets, "override a config value: key=value (value parsed as JSON when it can be)");
  run_cmd->add_option("--run-id", run.run_id, "run id; the same id resumes that run instead of starting twice");
  run_cmd->add_flag("--new-version", run.new_version, "continue an existing --run-id with a changed pipeline");
  run_cmd->add_option("--durability", run.durability, "strict or batched (default: the pipeline's)");
  run_cmd->add_flag("--no-wait", run.no_wait, "return when the run parks on a promise instead of waiting");
  run_cmd->add_flag("--json", g.json, "print one JSON object with the run's status, stages and metrics");

  std::string file;
  auto* validate_cmd = app.add_subcommand("validate", "check a pipeline and list every problem");
  validate_cmd->add_option("file", file, "pipeline YAML")->required();
  validate_cmd->add_flag("--json", g.json, "print the diagnostics as JSON");

  auto* stages_cmd = app.add_subcommand("stages", "list the registered stage types");
  stages_cmd->add_flag("--json", g.json, "print JSON");

  std::string stage;
  auto* describe_cmd = app.add_subcommand("describe", "show a stage type's options, inputs and outputs");
  describe_cmd->add_option("stage", stage, "stage type")->required();
  describe_cmd->add_flag("--json", g.json, "print JSON");

  std::string run_id;
  auto* status_cmd = app.add_subcommand("status", "show a run's stages: status, attempts, duration, error");
  status_cmd->add_option("run_id", run_id, "run id")->required();
  status_cmd->add_flag("--json", g.json, "print JSON");

  auto* experiments_cmd = app.add_subcommand("experiments", "inspect experiment branches and comparisons");
  experiments_cmd->require_subcommand(1);
  auto* experiments_show = experiments_cmd->add_subcommand("show", "a run's branches table and comparison verdicts");
  experiments_show->add_option("run_id", run_id, "run id")->required();
  experiments_show->add_flag("--json", g.json, "print JSON");

  ListArgs list;
  auto* list_cmd = app.add_subcommand("list", "list recent runs");
  list_cmd->add_option("--status", list.status, "running, completed, failed, waiting or needs_attention");
  list_cmd->add_option("--pipeline", list.pipeline, "pipeline name");
  list_cmd->add_option("--since", list.since, "only runs created within this long, e.g. 2h or 7d");
  list_cmd->add_option("--limit", list.limit, "at most this many runs (default 20)");
  list_cmd->add_flag("--json", g.json, "print JSON");

  ResumeArgs resume;
  auto* resume_cmd = app.add_subcommand("resume", "continue a run from its journal at the first unfinished stage");
  resume_cmd->add_option("run_id", resume.run_id, "run id")->required();
  resume_cmd->add_option("--rerun-step", resume.rerun_steps, "run this in-flight step again (needs_attention)");
  resume_cmd->add_option("--skip-step", resume.skip_steps, "record this in-flight step as skipped (needs_attention)");
  resume_cmd->add_flag("--no-wait", resume.no_wait, "return when the run parks on a promise instead of waiting");
  resume_cmd->add_flag("--json", g.json, "print JSON");

  std::string name, value;
  auto* signal_cmd = app.add_subcommand("signal", "resolve a run's durable promise");
  signal_cmd->add_option("run_id", run_id, "run id")->required();
  signal_cmd->add_option("name", name, "promise name")->required();
  signal_cmd->add_option("--value", value, "the value, as JSON")->required();

  std::string from, new_id;
  bool fork_no_wait = false;
  auto* fork_cmd = app.add_subcommand("fork", "start a new run that reuses a run's journal before a step");
  fork_cmd->add_option("run_id", run_id, "source run id")->required();
  fork_cmd->add_option("--from", from, "first step key to execute again, e.g. /train[2]/eval")->required();
  fork_cmd->add_option("--run-id", new_id, "id for the new run");
  fork_cmd->add_flag("--no-wait", fork_no_wait, "return when the run parks on a promise instead of waiting");
  fork_cmd->add_flag("--json", g.json, "print JSON");

  std::string older_than;
  auto* prune_cmd = app.add_subcommand("prune", "delete finished runs older than a duration (never unfinished ones)");
  prune_cmd->add_option("--older-than", older_than, "e.g. 30d, 12h")->required();

  std::string which, scenarios;
  bool quick = false;
  auto* bench_cmd = app.add_subcommand("bench", "run a benchmark and print JSON");
  bench_cmd->add_option("which", which, "dispatch, journal, hedging, experiments or llm")->required();
  bench_cmd->add_option("--scenarios", scenarios, "hedging: more scenarios from a JSON file (docs/hedging.md)");
  bench_cmd->add_flag("--json", g.json, "print JSON (the default)");
  bench_cmd->add_flag("--quick", quick, "a shorter run, for CI smoke tests");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }

  if (*run_cmd) return cmd_run(g, run);
  if (*validate_cmd) return cmd_validate(g, file);
  if (*stages_cmd) return cmd_stages(g);
  if (*describe_cmd) return cmd_describe(g, stage);
  if (*status_cmd) return cmd_status(g, run_id);
  if (*experiments_show) return cmd_experiments_show(g, run_id);
  if (*list_cmd) return cmd_list(g, list);
  if (*resume_cmd) return cmd_resume(g, resume);
  if (*signal_cmd) return cmd_signal(g, run_id, name, value);
  if (*fork_cmd) return cmd_fork(g, run_id, from, new_id, fork_no_wait);
  if (*prune_cmd) return cmd_prune(g, older_than);
  if (*bench_cmd) return cmd_bench(g, which, quick, scenarios);
  return 2;
}

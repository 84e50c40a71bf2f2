// crucible: load, validate and run pipelines as durable workflows.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "commands.h"
#include "crucible/core/suggest.h"

namespace crucible::cli {
namespace {

// Every subcommand's arguments, and what to call when it was given.
struct Cli {
  CLI::App app{"Crucible runs AI experiment pipelines as durable, reliability-aware workflows."};
  GlobalOptions g;
  RunArgs run;
  SubmitArgs submit;
  WorkerArgs worker;
  QueueArgs queue;
  ScheduleArgs schedule;
  ResumeArgs resume;
  ListArgs list;
  std::string file, stage, run_id, name, value, from, which, scenarios;
  PruneArgs prune;
  ServeArgs serve;
  std::string scope = "read";
  RandomScenarios random;
  std::optional<std::string> new_id;
  bool fork_no_wait = false, quick = false;
  std::vector<std::pair<CLI::App*, std::function<int()>>> actions;

  CLI::App* command(const char* name_, const char* help, std::function<int()> action) {
    CLI::App* sub = app.add_subcommand(name_, help);
    actions.emplace_back(sub, std::move(action));
    return sub;
  }
  void json_flag(CLI::App* sub, const char* help = "print JSON") { sub->add_flag("--json", g.json, help); }
};

void add_run_commands(Cli& c) {
  auto* run =
      c.command("run", "run a pipeline (an existing --run-id resumes instead)", [&c] { return cmd_run(c.g, c.run); });
  run->add_option("file", c.run.file, "pipeline YAML")->required();
  run->add_option("--set", c.run.sets, "override a config value: key=value (value parsed as JSON when it can be)");
  run->add_option("--run-id", c.run.run_id, "run id; the same id resumes that run instead of starting twice");
  run->add_flag("--new-version", c.run.new_version, "continue an existing --run-id with a changed pipeline");
  run->add_option("--durability", c.run.durability, "strict or batched (default: the pipeline's)");
  run->add_flag("--no-wait", c.run.no_wait, "return when the run parks on a promise instead of waiting");
  c.json_flag(run, "print one JSON object with the run's status, stages and metrics");

  auto* resume = c.command("resume", "continue a run from its journal at the first unfinished stage",
                           [&c] { return cmd_resume(c.g, c.resume); });
  resume->add_option("run_id", c.resume.run_id, "run id")->required();
  resume->add_option("--rerun-step", c.resume.rerun_steps, "run this in-flight step again (needs_attention)");
  resume->add_option("--skip-step", c.resume.skip_steps, "record this in-flight step as skipped (needs_attention)");
  resume->add_flag("--no-wait", c.resume.no_wait, "return when the run parks on a promise instead of waiting");
  c.json_flag(resume);

  auto* signal = c.command("signal", "resolve a run's durable promise",
                           [&c] { return cmd_signal(c.g, c.run_id, c.name, c.value); });
  signal->add_option("run_id", c.run_id, "run id")->required();
  signal->add_option("name", c.name, "promise name")->required();
  signal->add_option("--value", c.value, "the value, as JSON")->required();

  auto* fork = c.command("fork", "start a new run that reuses a run's journal before a step",
                         [&c] { return cmd_fork(c.g, c.run_id, c.from, c.new_id, c.fork_no_wait); });
  fork->add_option("run_id", c.run_id, "source run id")->required();
  fork->add_option("--from", c.from, "first step key to execute again, e.g. /train[2]/eval")->required();
  fork->add_option("--run-id", c.new_id, "id for the new run");
  fork->add_flag("--no-wait", c.fork_no_wait, "return when the run parks on a promise instead of waiting");
  c.json_flag(fork);
}

void add_fleet_commands(Cli& c) {
  auto* submit = c.command("submit", "queue a run for `crucible worker`s and print its id",
                           [&c] { return cmd_submit(c.g, c.submit); });
  submit->add_option("file", c.submit.file, "pipeline YAML")->required();
  submit->add_option("--set", c.submit.sets, "override a config value: key=value");
  submit->add_option("--run-id", c.submit.run_id, "run id; submitting an id again is the same run");
  submit->add_option("--queue", c.submit.queue, "queue name (default: default)");
  submit->add_option("--priority", c.submit.priority, "smaller runs first (default 0)");
  submit->add_option("--partition", c.submit.partition, "partition key: the queue's concurrency counts it apart");
  submit->add_option("--timeout", c.submit.timeout, "the run's deadline from its first execution, e.g. 30m");
  c.json_flag(submit);

  auto* worker = c.command("worker", "claim and execute submitted runs until SIGTERM, then drain",
                           [&c] { return cmd_worker(c.g, c.worker); });
  worker->add_option("--queue", c.worker.queues, "a queue to serve (repeatable; default: default)");
  worker->add_option("--concurrency", c.worker.concurrency, "runs executing at once (default 8)");
  worker->add_option("--id", c.worker.id, "worker id in leases (default <hostname>:<pid>)");
  worker->add_option("--lease", c.worker.lease, "lease length: a dead worker's runs move after this (default 15s)");
  worker->add_option("--poll", c.worker.poll, "how often an idle worker looks for runs (default 200ms)");
  worker->add_option("--grace", c.worker.grace, "on SIGTERM, how long running stages may go on (default 30s)");
  c.json_flag(worker, "print one JSON line per run that stops");

  auto* cancel = c.command("cancel", "cancel a run: its in-flight stages are stopped wherever they run",
                           [&c] { return cmd_cancel(c.g, c.run_id, c.value); });
  cancel->add_option("run_id", c.run_id, "run id")->required();
  cancel->add_option("--reason", c.value, "recorded as the run's error");
  c.json_flag(cancel);

  auto* workers = c.command("workers", "live workers: their queues, slots and the runs they hold",
                            [&c] { return cmd_workers(c.g, c.value); });
  workers->add_option("--lost", c.value, "also workers whose heartbeats stopped within this long, e.g. 1h");
  c.json_flag(workers);

  auto* queue = c.app.add_subcommand("queue", "a queue's limits, shared by every worker");
  queue->require_subcommand(1);
  auto* set = queue->add_subcommand("set", "set a queue's concurrency and rate limit");
  c.actions.emplace_back(set, [&c] { return cmd_queue_set(c.g, c.queue); });
  set->add_option("name", c.queue.name, "queue name")->required();
  set->add_option("--concurrency", c.queue.concurrency, "runs of the queue executing at once on all workers");
  set->add_option("--rate", c.queue.rate, "at most STARTS/PERIOD new runs, e.g. 10/1m");
  set->add_flag("--clear", c.queue.clear, "remove the queue's limits");
  auto* show = queue->add_subcommand("show", "a queue's limits and runs");
  c.actions.emplace_back(show, [&c] { return cmd_queue_show(c.g, c.name); });
  show->add_option("name", c.name, "queue name")->required();
  c.json_flag(show);

  auto* schedule = c.app.add_subcommand("schedule", "start a pipeline on a cron schedule (workers fire it)");
  schedule->require_subcommand(1);
  auto* add = schedule->add_subcommand("add", "add a schedule: each tick starts exactly one run");
  c.actions.emplace_back(add, [&c] { return cmd_schedule_add(c.g, c.schedule); });
  add->add_option("name", c.schedule.name, "schedule name (part of each run id)")->required();
  add->add_option("pipeline", c.schedule.file, "pipeline YAML")->required();
  add->add_option("--cron", c.schedule.cron, "five fields in UTC, e.g. \"*/5 * * * *\"")->required();
  add->add_option("--set", c.schedule.sets, "override a config value: key=value");
  add->add_option("--queue", c.schedule.queue, "queue the runs go to (default: default)");
  add->add_option("--priority", c.schedule.priority, "the runs' priority (default 0)");
  add->add_flag("--backfill", c.schedule.backfill, "after an outage, start every missed tick (default: the latest)");
  auto* list = schedule->add_subcommand("list", "schedules, their next and last ticks, missed ticks");
  c.actions.emplace_back(list, [&c] { return cmd_schedule_list(c.g); });
  c.json_flag(list);
  for (const char* action : {"pause", "resume", "remove"}) {
    auto* sub = schedule->add_subcommand(action, std::string(action) + " a schedule");
    c.actions.emplace_back(sub, [&c, action] { return cmd_schedule_change(c.g, c.name, action); });
    sub->add_option("name", c.name, "schedule name")->required();
  }
}

void add_inspect_commands(Cli& c) {
  auto* validate =
      c.command("validate", "check a pipeline and list every problem", [&c] { return cmd_validate(c.g, c.file); });
  validate->add_option("file", c.file, "pipeline YAML")->required();
  c.json_flag(validate, "print the diagnostics as JSON");

  c.json_flag(c.command("stages", "list the registered stage types", [&c] { return cmd_stages(c.g); }));

  auto* describe = c.command("describe", "show a stage type's options, inputs and outputs",
                             [&c] { return cmd_describe(c.g, c.stage); });
  describe->add_option("stage", c.stage, "stage type")->required();
  c.json_flag(describe);

  auto* status = c.command("status", "show a run's stages: status, attempts, duration, error",
                           [&c] { return cmd_status(c.g, c.run_id); });
  status->add_option("run_id", c.run_id, "run id")->required();
  c.json_flag(status);

  auto* experiments = c.app.add_subcommand("experiments", "inspect experiment branches and comparisons");
  experiments->require_subcommand(1);
  auto* show = experiments->add_subcommand("show", "a run's branches table and comparison verdicts");
  c.actions.emplace_back(show, [&c] { return cmd_experiments_show(c.g, c.run_id); });
  show->add_option("run_id", c.run_id, "run id")->required();
  c.json_flag(show);

  auto* list = c.command("list", "list recent runs", [&c] { return cmd_list(c.g, c.list); });
  list->add_option("--status", c.list.status, "running, completed, failed, waiting or needs_attention");
  list->add_option("--pipeline", c.list.pipeline, "pipeline name");
  list->add_option("--since", c.list.since, "only runs created within this long, e.g. 2h or 7d");
  list->add_option("--limit", c.list.limit, "at most this many runs (default 20)");
  c.json_flag(list);
}

void add_server_commands(Cli& c) {
  auto* serve = c.command("serve", "serve the HTTP API, the ingress and the dashboard until SIGTERM",
                          [&c] { return cmd_serve(c.g, c.serve); });
  serve->add_option("--listen", c.serve.listen, "HOST:PORT to listen on (default 127.0.0.1:8080)");
  serve->add_option("--pipelines", c.serve.pipelines, "folder of pipelines started by name (NAME.yaml)");
  serve->add_option("--workers", c.serve.workers,
                    "runs executing in this process at once (default 8); 0 leaves them to `crucible worker`s");
  serve->add_option("--queue", c.serve.queue, "the queue the server's runs go to (default: default)");
  serve->add_flag("--allow-anonymous-read", c.serve.allow_anonymous_read,
                  "answer the read routes without an API key (anyone who reaches the address reads every run)");
  serve->add_option("--tls-cert", c.serve.tls_cert, "PEM certificate: serve HTTPS (with --tls-key)");
  serve->add_option("--tls-key", c.serve.tls_key, "PEM private key of --tls-cert");
  serve->add_option("--rate-limit", c.serve.rate_limit,
                    "requests per second per API key; beyond it, 429 (default: none)");
  serve->add_option("--max-body", c.serve.max_body,
                    "largest request body in bytes; larger ones get 413 (default 1 MiB)");
  serve->add_option("--ingress-wait", c.serve.ingress_wait,
                    "how long POST /{pipeline}/run waits for the result before answering 202 (default 30s)");

  auto* keys = c.app.add_subcommand("keys", "API keys of `crucible serve`, stored hashed in the journal");
  keys->require_subcommand(1);
  auto* create = keys->add_subcommand("create", "create a key and print it (shown only once)");
  c.actions.emplace_back(create, [&c] { return cmd_keys_create(c.g, c.name, c.scope); });
  create->add_option("--name", c.name, "a name for the key, e.g. ci or dashboard")->required();
  create->add_option("--scope", c.scope, "read, write (read and start runs) or admin (default read)");
  c.json_flag(create);
  auto* list = keys->add_subcommand("list", "every key: id, name, scope, created, revoked");
  c.actions.emplace_back(list, [&c] { return cmd_keys_list(c.g); });
  c.json_flag(list);
  auto* revoke = keys->add_subcommand("revoke", "revoke a key by id or name; servers refuse it within a second");
  c.actions.emplace_back(revoke, [&c] { return cmd_keys_revoke(c.g, c.name); });
  revoke->add_option("key", c.name, "key id or name")->required();
}

void add_admin_commands(Cli& c) {
  auto* prune = c.command("prune",
                          "delete finished runs older than a duration (never unfinished ones) and free their space: "
                          "journal pages, unreferenced blobs, report folders",
                          [&c] { return cmd_prune(c.g, c.prune); });
  prune->add_option("--older-than", c.prune.older_than, "e.g. 30d, 12h")->required();
  prune->add_option("--blob-grace", c.prune.blob_grace,
                    "keep unreferenced blobs stored this recently, which a running run may be about to use (15m)");
  c.json_flag(prune);

  auto* bench = c.command("bench", "run a benchmark (crucible-bench) and print JSON",
                          [&c] { return cmd_bench(c.g, c.which, c.quick, c.scenarios, c.random); });
  bench->add_option("which", c.which, "dispatch, journal, journal-postgres, fleet, hedging, experiments, llm or serve")
      ->required();
  bench->add_option("--scenarios", c.scenarios, "hedging: more scenarios from a JSON file (docs/hedging.md)");
  c.json_flag(bench, "print JSON (the default)");
  bench->add_flag("--quick", c.quick, "a shorter run, for CI smoke tests");
  bench->add_option("--random", c.random.count, "hedging: also run this many random scenarios (docs/hedging.md)");
  bench->add_option("--seed", c.random.seed, "hedging: the seed of the random scenarios (default 1)");
}

}  // namespace

// `crucible foo`: names the unknown command and the nearest one (2 for a usage error), or 0.
int unknown_command(const CLI::App& app, int argc, char** argv) {
  std::vector<std::string> names;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    names.push_back(sub->get_name());
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.empty() || arg[0] == '-') {
      if ((arg == "--journal" || arg == "--events") && i + 1 < argc) ++i;  // its value
      continue;
    }
    if (std::find(names.begin(), names.end(), arg) != names.end()) return 0;
    std::string hint = closest_match(arg, names);
    std::fprintf(stderr, "crucible: unknown command '%s'%s; `crucible --help` lists them\n", arg.c_str(),
                 hint.empty() ? "" : ("; did you mean '" + hint + "'?").c_str());
    return 2;
  }
  return 0;
}

}  // namespace crucible::cli

int main(int argc, char** argv) {
  // SIGINT and SIGTERM are taken by one task that stops runs gracefully (commands.cc
  // SignalStop); blocked here, before any thread exists, so no other thread receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  crucible::cli::Cli c;
  c.app.require_subcommand(1);
  c.app.fallthrough();  // global options may follow the subcommand too
  c.app.add_option("--journal", c.g.journal,
                   "journal: a SQLite file or postgresql://user@host:port/db (default $CRUCIBLE_JOURNAL or "
                   ".crucible/journal.db)");
  c.app.add_option("--events", c.g.events_file, "append telemetry events as JSON lines to this file");
  c.app.add_flag("--quiet,-q", c.g.quiet, "no progress output");
  c.app.set_version_flag("--version", std::string("crucible ") + CRUCIBLE_VERSION);
  add_run_commands(c);
  add_fleet_commands(c);
  add_inspect_commands(c);
  add_server_commands(c);
  add_admin_commands(c);
  if (int code = crucible::cli::unknown_command(c.app, argc, argv); code != 0) return code;
  try {
    c.app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = c.app.exit(e);
    return code == 0 ? 0 : 2;
  }
  for (const auto& [sub, action] : c.actions) {
    if (!*sub) continue;
    // The last net: library calls return errors, but a throw from a dependency (a damaged
    // journal value, say) is reported, never an abort.
    try {
      return action();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "crucible: internal error: %s\n", e.what());
      return 1;
    }
  }
  return 2;
}

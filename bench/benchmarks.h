// `crucible bench ...`: benchmarks that print one JSON object, with a raw baseline measured in
// the same run so that noisy shared machines still give meaningful ratios.
#pragma once

#include <cstdint>
#include <string>
#include "crucible/core/error.h"

#include "crucible/core/json.h"

namespace crucible::bench {

// A 10,000-stage sequence of noop stages and a 10,000-branch parallel fan-out on the in-memory
// journal: sequence_ns_per_stage, parallel_ns_per_branch (medians over repetitions).
Result<Json> run_dispatch(bool quick);

// SQLite journal: raw single-row FULL commits; strict 10-step pipelines back to back; 256
// concurrent batched pipelines; recovery of 10,000 interrupted runs.
Result<Json> run_journal(bool quick);

// PostgreSQL journal: raw single-row libpq commits; strict appends from one appender and from
// sixteen, with the server's commit count (group commit). On a throwaway cluster unless `url`.
Result<Json> run_journal_postgres(bool quick, const std::string& url);

// The raw baseline: `n` single-row autocommitted INSERTs through libpq (p50_us, p99_us); makes a
// table named raw in the database `url` names.
Result<Json> raw_postgres_commits(const std::string& url, int n);

// The fleet on PostgreSQL: strict per-step latency of a sequential 10-step run, and the durable
// steps per second of four workers with 64 concurrent 10-step runs each, against raw commits.
Result<Json> run_fleet(bool quick, const std::string& url);

// Four `crucible worker` processes on `runs` submitted 10-step runs (100 ms a step, 2 s leases);
// one is killed with SIGKILL while it holds runs: whether all complete, no step completes twice,
// and when the last of the killed worker's runs finished.
Result<Json> fleet_recovery(const std::string& url, int runs);

// One `crucible worker` holding `runs` runs that each wait 2 s in an HTTP call to a loopback
// server: the time until all finished and the worker's peak RSS.
Result<Json> fleet_http_waits(const std::string& url, int runs);

// Hedging policies in virtual time over the built-in scenarios (and those of `scenario_file`),
// against an oracle of fixed delays, with pass/fail targets; plus a live loopback smoke test.
Result<Json> run_hedging(bool quick, const std::string& scenario_file, uint64_t random = 0, uint64_t seed = 1);

// 256 experiment branches that each wait 100 ms on I/O (max_concurrency 256, SQLite journal):
// wall_ms, extra_rss_mib, overhead_us_per_branch, against raw threads doing the same waits.
Result<Json> run_experiments(bool quick);

// Hedged LLM calls against a loopback Anthropic-style server with a slow tail, against the same
// stream without hedging: p99_reduction, extra_calls_pct, journaled_results_per_step.
Result<Json> run_llm(bool quick);

// The HTTP server (GET /v1/runs/{id}, the ingress of a 10-step run sequentially and at
// concurrency 32) against a bare cpp-httplib handler and against Runner::start in the same run.
Result<Json> run_serve(bool quick);

// The live part: `seconds` of hedged requests against a loopback HTTP server with stragglers.
Result<Json> run_hedging_live(double seconds);

}  // namespace crucible::bench

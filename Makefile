# make        build everything (Release) into build/; the CLI is build/bin/crucible
# make run    install dependencies, build, run the quickstart, experiment and critique-loop examples
#             on the SQLite journal (the LLM example answers offline without ANTHROPIC_API_KEY)
# make test   install dependencies, build, run every unit and integration test with ctest
# make asan   build and run every test under AddressSanitizer and UndefinedBehaviorSanitizer (build-asan/)
# make asan-coverage  both of asan and coverage from one build (build-asan-cov/): what CI runs
# make tsan   build and run the concurrent test binaries under ThreadSanitizer (build-tsan/)
# make fuzz   build the libFuzzer targets with clang (build-fuzz/) and run each for FUZZ_SECONDS
# make coverage  line and branch coverage of src/ and apps/ (gcovr, build-cov/); each module >= 95%
# make bench  print the dispatch, journal, experiments and llm benchmarks as JSON

BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
ifeq ($(CI),true)
  CMAKE_FLAGS += -DCRUCIBLE_WERROR=ON
endif

.PHONY: all deps build run test asan asan-coverage tsan fuzz coverage bench clean

# Sanitizer builds carry line tables only (-g1): reports name file and line, and the build is
# far quicker than with full debug information.
SAN_FLAGS = -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DCMAKE_CXX_FLAGS_DEBUG="-g1"
# The SIGKILL crash oracles time their kills to uninstrumented speed (`make test` runs them), and
# unoptimized, the hedging and dispatch benchmarks and the load detector's 100,000-request test
# take minutes (`make test` and `make asan` run them).
SLOW_UNDER_INSTRUMENTATION = ^(Durability/CrashTest|Journals/ExperimentCrash|Journals/Fleet\.WorkersKilledAtRandom)
COVERAGE_EXCLUDED = $(SLOW_UNDER_INSTRUMENTATION)|^Cli\.Bench(Hedging|Dispatch)|^HedgePolicy\.TheLoadDetectorIgnoresTheMediansNoise$$
ASAN_ENV = ASAN_OPTIONS="detect_leaks=1" UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
COVERAGE_GOAL ?= 95
# gcovr over src/ and apps/ of build dir $(1), then the per-module gate.
define coverage_report
	gcovr -r . $(1) --filter 'src/' --filter 'apps/' --exclude '.*_test\.cc' --exclude '.*_fixture\.h' --exclude 'src/testing/' \
	  --exclude-throw-branches --exclude-unreachable-branches -j $(JOBS) \
	  --json-summary $(1)/coverage.json --txt $(1)/coverage.txt > /dev/null
	scripts/coverage-gate $(1)/coverage.json $(COVERAGE_GOAL)
endef

all: build

deps:
	@scripts/install-deps

build: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) > /dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/bin/crucible run examples/quickstart.yaml
	$(BUILD)/bin/crucible run examples/experiment.yaml
	$(BUILD)/bin/crucible run examples/critique_loop.yaml

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

asan: deps
	@cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCRUCIBLE_ASAN=ON $(SAN_FLAGS) > /dev/null
	@cmake --build build-asan -j $(JOBS)
	cd build-asan && $(ASAN_ENV) ctest --output-on-failure -j $(JOBS) -E '$(SLOW_UNDER_INSTRUMENTATION)'

# One unoptimized build with both AddressSanitizer/UBSan and gcov: every test runs once under the
# sanitizers and counts its lines, and the tree is built once for both.
asan-coverage: deps
	@cmake -S . -B build-asan-cov -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCRUCIBLE_ASAN=ON -DCRUCIBLE_COVERAGE=ON \
	  $(SAN_FLAGS) > /dev/null
	@cmake --build build-asan-cov -j $(JOBS)
	@find build-asan-cov -name '*.gcda' -delete
	cd build-asan-cov && $(ASAN_ENV) ctest --output-on-failure -j $(JOBS) -E '$(COVERAGE_EXCLUDED)'
	$(call coverage_report,build-asan-cov)

tsan: deps
	@cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCRUCIBLE_TSAN=ON $(SAN_FLAGS) $(CMAKE_FLAGS) > /dev/null
	@cmake --build build-tsan -j $(JOBS) --target engine_test stages_test http_test journal_test journal_sqlite_test journal_postgres_test core_test reliability_test experiment_test llm_test server_test
	cd build-tsan && TSAN_OPTIONS="halt_on_error=1 suppressions=$(CURDIR)/tests/tsan.supp" ctest --output-on-failure -j $(JOBS) -R '^(HttpClient|Executor|Runner|WorkerTest|ScheduleTest|JournalConformance|Memory|Sqlite|SqliteJournal|Postgres|FakeClock|Hedger|HedgingStage|HedgingOnAStage|HedgePolicy|Shadow|MultiBranch|RoundRobin|InMemoryRunLogger|ExperimentPipelineTest|ScriptedProvider|RetryingProvider|HedgedProvider|CircuitBreakingProvider|Api/Adapters|LlmPipelineTest|ServerTest|ApiKeysTest|AnonymousReadTest)'

FUZZ_SECONDS ?= 45
fuzz: deps
	@CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCRUCIBLE_FUZZ=ON -DCRUCIBLE_BUILD_TESTS=OFF $(SAN_FLAGS) > /dev/null
	@cmake --build build-fuzz -j $(JOBS) --target fuzz_targets
	scripts/run-fuzzers build-fuzz $(FUZZ_SECONDS)

coverage: deps
	@cmake -S . -B build-cov -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCRUCIBLE_COVERAGE=ON > /dev/null
	@cmake --build build-cov -j $(JOBS)
	@find build-cov -name '*.gcda' -delete
	cd build-cov && ctest --output-on-failure -j $(JOBS) -E '$(COVERAGE_EXCLUDED)'
	$(call coverage_report,build-cov)

bench: build
	$(BUILD)/bin/crucible bench dispatch --json
	$(BUILD)/bin/crucible bench journal --json
	$(BUILD)/bin/crucible bench experiments --json
	$(BUILD)/bin/crucible bench llm --json

clean:
	rm -rf $(BUILD) build-asan build-asan-cov build-tsan build-fuzz build-cov

# make        build everything (Release) into build/; the CLI is build/bin/crucible
# make run    install dependencies, build, run the quickstart, experiment and critique-loop examples
#             on the SQLite journal (the LLM example answers offline without ANTHROPIC_API_KEY)
# make test   install dependencies, build, run every unit and integration test with ctest
# make asan   build and run every test under AddressSanitizer and UndefinedBehaviorSanitizer (build-asan/)
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

.PHONY: all deps build run test asan tsan fuzz coverage bench clean

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

# The SIGKILL crash oracles time their kills to uninstrumented speed; `make test` runs them.
asan: deps
	@cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCRUCIBLE_ASAN=ON > /dev/null
	@cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS="detect_leaks=1" UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" ctest --output-on-failure -j $(JOBS) -E '^(Durability/CrashTest|Journals/ExperimentCrash|Journals/Fleet\.WorkersKilledAtRandom)'

tsan: deps
	@cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCRUCIBLE_TSAN=ON $(CMAKE_FLAGS) > /dev/null
	@cmake --build build-tsan -j $(JOBS) --target engine_test stages_test http_test journal_test journal_sqlite_test journal_postgres_test core_test reliability_test experiment_test llm_test
	cd build-tsan && TSAN_OPTIONS="halt_on_error=1 suppressions=$(CURDIR)/tests/tsan.supp" ctest --output-on-failure -j $(JOBS) -R '^(HttpClient|Executor|Runner|WorkerTest|ScheduleTest|JournalConformance|Memory|Sqlite|SqliteJournal|Postgres|FakeClock|Hedger|HedgingStage|HedgingOnAStage|HedgePolicy|Shadow|MultiBranch|RoundRobin|InMemoryRunLogger|ExperimentPipelineTest|ScriptedProvider|RetryingProvider|HedgedProvider|CircuitBreakingProvider|Api/Adapters|LlmPipelineTest)'

FUZZ_SECONDS ?= 45
fuzz: deps
	@CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCRUCIBLE_FUZZ=ON -DCRUCIBLE_BUILD_TESTS=OFF > /dev/null
	@cmake --build build-fuzz -j $(JOBS) --target fuzz_targets
	scripts/run-fuzzers build-fuzz $(FUZZ_SECONDS)

# The crash oracles time their kills to optimized speed, and the hedging benchmark's simulation
# takes minutes unoptimized; `make test` runs both.
COVERAGE_GOAL ?= 95
coverage: deps
	@cmake -S . -B build-cov -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCRUCIBLE_COVERAGE=ON > /dev/null
	@cmake --build build-cov -j $(JOBS)
	@find build-cov -name '*.gcda' -delete
	cd build-cov && ctest --output-on-failure -j $(JOBS) -E '^(Durability/CrashTest|Journals/ExperimentCrash|Journals/Fleet\.WorkersKilledAtRandom)|^Cli\.BenchHedging'
	gcovr -r . build-cov --filter 'src/' --filter 'apps/' --exclude '.*_test\.cc' --exclude '.*_fixture\.h' --exclude 'src/testing/' \
	  --exclude-throw-branches --exclude-unreachable-branches -j $(JOBS) \
	  --json-summary build-cov/coverage.json --txt build-cov/coverage.txt > /dev/null
	scripts/coverage-gate build-cov/coverage.json $(COVERAGE_GOAL)

bench: build
	$(BUILD)/bin/crucible bench dispatch --json
	$(BUILD)/bin/crucible bench journal --json
	$(BUILD)/bin/crucible bench experiments --json
	$(BUILD)/bin/crucible bench llm --json

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz build-cov

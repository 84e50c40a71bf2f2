# make        build everything (Release) into build/; the CLI is build/bin/crucible
# make run    install dependencies, build, run the quickstart, experiment and critique-loop examples
#             on the SQLite journal (the LLM example answers offline without ANTHROPIC_API_KEY)
# make test   install dependencies, build, run every unit and integration test with ctest
# make asan   build and run every test under AddressSanitizer and UndefinedBehaviorSanitizer (build-asan/)
# make tsan   build and run the concurrent test binaries under ThreadSanitizer (build-tsan/)
# make bench  print the dispatch, journal, experiments and llm benchmarks as JSON

BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
ifeq ($(CI),true)
  CMAKE_FLAGS += -DCRUCIBLE_WERROR=ON
endif

.PHONY: all deps build run test asan tsan bench clean

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
	cd build-asan && ASAN_OPTIONS="detect_leaks=1" UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" ctest --output-on-failure -j $(JOBS) -E '^(Durability/CrashTest|ExperimentCrash)\.'

tsan: deps
	@cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCRUCIBLE_TSAN=ON $(CMAKE_FLAGS) > /dev/null
	@cmake --build build-tsan -j $(JOBS) --target engine_test stages_test http_test journal_test journal_sqlite_test core_test reliability_test experiment_test llm_test
	cd build-tsan && TSAN_OPTIONS="halt_on_error=1 suppressions=$(CURDIR)/tests/tsan.supp" ctest --output-on-failure -j $(JOBS) -R '^(HttpClient|Executor|Runner|JournalConformance|Memory|Sqlite|SqliteJournal|FakeClock|Hedger|HedgingStage|HedgingOnAStage|HedgePolicy|Shadow|MultiBranch|RoundRobin|InMemoryRunLogger|ExperimentPipelineTest|ScriptedProvider|RetryingProvider|HedgedProvider|CircuitBreakingProvider|Api/Adapters|LlmPipelineTest)'

bench: build
	$(BUILD)/bin/crucible bench dispatch --json
	$(BUILD)/bin/crucible bench journal --json
	$(BUILD)/bin/crucible bench experiments --json
	$(BUILD)/bin/crucible bench llm --json

clean:
	rm -rf $(BUILD) build-tsan

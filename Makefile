# The two set-up commands of README.md are `make demo` and `make test`; both install what they need.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-unit test-integration test-e2e test-containers test-chaos chaos lint typing-tree bench clean testbed testbed-up testbed-down image containers-up

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Runs the sample checkpointed job locally: checkpoints complete, a worker is killed, the job recovers.
demo: $(STAMP)
	$(BIN)/streamjob demo

typing-tree:
	mkdir -p .typing/streamjob
	ln -sfn ../../worker .typing/streamjob/worker
	ln -sfn ../../operator .typing/streamjob/operator

# Unit tests whose fakes stand in for the package's Protocols (mypy's configuration checks only the package).
TYPED_TESTS := tests/unit/checkpoint_fakes.py tests/unit/test_checkpoint_*.py tests/unit/test_completed_checkpoint_store.py \
	tests/unit/test_coordinator_knobs.py tests/unit/test_storage_retention.py tests/unit/test_storage_layout.py \
	tests/unit/runtime_support.py tests/unit/test_subtask_checkpointer.py tests/unit/test_barrier_overtaking.py \
	tests/unit/test_runtime_task.py tests/unit/test_testing_kit.py tests/unit/test_slot_dispatch.py \
	tests/unit/test_aligned_timeout.py

lint: $(STAMP) typing-tree
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy $(TYPED_TESTS)
	PYTHONPATH=.typing $(BIN)/lint-imports

# Every tier: unit, integration (real S3, real processes) and e2e (real API server). CI=true turns
# an unavailable server into a failure instead of a skip.
# Builds (or finds in ~/.cache/streamjob-testbed) the e2e control plane and helm from their Go modules.
testbed:
	tests/cluster/build.sh all

# The test bed by hand (docs/testbed.md, "By hand"): control plane, node agent and S3 in the background.
testbed-up: $(STAMP)
	$(BIN)/python -m tests.cluster up

testbed-down: $(STAMP)
	$(BIN)/python -m tests.cluster down

test: $(STAMP) lint testbed
	$(BIN)/pytest tests

# The unit tier on two processes (pytest-xdist): it has no servers to share, and much of its time is waits.
# The other tiers share module-scoped servers and run in one process. Bytecode (and pytest's rewritten
# test modules) are cached even where PYTHONDONTWRITEBYTECODE is set: collection takes 1.3 s instead of 5 s.
test-unit: $(STAMP)
	PYTHONDONTWRITEBYTECODE= $(BIN)/pytest -m unit -n 2 tests

test-integration: $(STAMP)
	$(BIN)/pytest -m integration tests

test-e2e: $(STAMP) testbed
	$(BIN)/pytest -m e2e tests

# The real-container tier (docs/testbed.md): the image built from the Dockerfile, two real kubelets.
test-containers: $(STAMP) testbed
	$(BIN)/pytest -m containers tests

# streamjob:<version> and streamjob-examples:<version> built without a registry (docs/operations.md).
image:
	tests/containers/images.sh all

# The real-container cluster by hand (docs/testbed.md): runs until Ctrl-C.
containers-up: $(STAMP) testbed
	$(BIN)/python -m tests.containers up

test-chaos: $(STAMP) testbed
	$(BIN)/pytest -m chaos tests

# A longer chaos campaign on its own test bed: SEED=n replays one run; SEEDS=1-12 runs several.
# Figures go to bench/results/chaos-<date>.md. See docs/chaos.md.
SEED ?=
SEEDS ?= 1-12
FAULTS ?= 20
KINDS ?= all
chaos: $(STAMP) testbed
	$(BIN)/python -m tests.chaos $(if $(SEED),--seed $(SEED),--seeds $(SEEDS)) --faults $(FAULTS) --kinds $(KINDS) \
		--report bench/results/chaos-$$(date -u +%F).md

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .typing .mypy_cache .pytest_cache

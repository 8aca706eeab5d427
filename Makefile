# Set-up and the two entry points of the README. Each target installs what it needs into .venv.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
export HF_HUB_OFFLINE := 1
export OMP_NUM_THREADS := 1
export OPENBLAS_NUM_THREADS := 1

.PHONY: test demo lint bench-smoke system browser clean-cache

# `import open3d` needs libusb (ENVIRONMENT.md); a fresh machine lacks it.
system:
	@if ! ldconfig -p 2>/dev/null | grep -q libusb-1.0; then \
		echo "installing libusb-1.0-0 (needed by open3d)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libusb-1.0-0 >/dev/null; \
	fi

# Debian's Chromium, for the browser test of report.html (playwright drives it; it downloads no browser).
browser:
	@if ! command -v chromium >/dev/null 2>&1; then \
		echo "installing chromium (for the report.html browser test)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi

# torch and torchvision are pinned together and installed first: torch 2.13.0 has no working
# torchvision here, and open_clip cannot import without one.
$(STAMP): pyproject.toml
	$(MAKE) system
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# Two pytest-xdist workers by default (a file's tests stay together, so module fixtures are built once):
# the suite's subprocesses leave cores idle often enough that two workers halve its time on 2 cores.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

demo: $(STAMP)
	$(BIN)/pointad-pipe demo

lint: $(STAMP)
	$(BIN)/ruff check pipeline model cli tests bench tools

# Every bench script at a tiny size (`--smoke`): they still run on the current code. Not a measurement.
BENCHES := $(sort $(filter-out bench/_%,$(wildcard bench/*.py)))
bench-smoke: $(STAMP)
	@set -e; for script in $(BENCHES); do \
		echo "== $$script --smoke"; \
		$(BIN)/python $$script --smoke; \
	done

clean-cache:
	rm -rf cache

# vrref: every target creates .venv on first use and installs what it needs.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# pytest workers: the long exhaustive explorations run beside the rest of the suite.
JOBS    ?= 2
DEBIAN_TOOLS := dig:bind9-dnsutils nsupdate:bind9-dnsutils kdig:knot-dnsutils dnsperf:dnsperf knotd:knot iptables:iptables

.PHONY: demo test lint typecheck pytest bench tools clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian's dig, nsupdate, kdig, dnsperf, Knot and iptables: real clients, a reference server and
# the nemesis's partitions for the integration tests. Installed only when missing, and only where
# apt-get can run.
tools:
	@missing=""; for pair in $(DEBIAN_TOOLS); do \
	  cmd=$${pair%%:*}; pkg=$${pair#*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null \
	    || echo "warning: apt-get failed; tests that need these tools will skip"; \
	  else echo "warning: missing$$missing and cannot apt-get; tests that need them will skip"; fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) tools
	$(BIN)/pytest -q -n $(JOBS) --dist worksteal

test: lint typecheck pytest

demo: $(STAMP) tools
	$(BIN)/python -m vrref.runtime.demo

bench: $(STAMP) tools
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

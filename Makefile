# The two commands a new user runs: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench-quality bench-train clean edge-wheel bench-mqtt

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run: make PYTHON=/path/to/python3.11 ..."; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nonn run --dataset digits --k 2 --out runs/demo
	@echo "report: runs/demo/report.html"

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# The headline accuracy table on Fashion-MNIST (Debian's dataset-fashion-mnist); resumes where it stopped.
bench-quality: $(STAMP)
	$(BIN)/nonn ablate --preset fashion-mnist --out runs/quality-fashion

# Images/s of the teacher and student stages, old path against new, in one run.
bench-train: $(STAMP)
	$(BIN)/nonn bench-train --out runs/bench-train

# dist/nonn_edge-<version>-py3-none-any.whl: the torch-free device runtime (src/nonn/edge) as its own wheel.
edge-wheel:
	$(PYTHON) packaging/edge/build_wheel.py --out dist

# Images/s of a gateway without --mqtt, with its broker down, and with it up, side by side (RUN ?= runs/demo).
RUN ?= runs/demo
bench-mqtt: $(STAMP)
	$(BIN)/python -m nonn.deploy.mqtt_bench $(RUN)

clean:
	rm -rf $(VENV) runs build src/*.egg-info

# Soak the edge runtime: 32 clients, 3 rounds of 60 s, through mutual-TLS nodes and gateway.
# Untrained wrn-40-4 -> 2 x wrn-16-1 at 3x32x32 (as bench-edge), or an export's: make soak MANIFEST=.../manifest.json
SOAK_MODELS = $(if $(MANIFEST),--manifest $(MANIFEST),--teacher-arch wrn-40-4 --student-arch wrn-16-1 --k 2 --input 3x32x32)
.PHONY: soak
soak: $(STAMP)
	$(BIN)/python -m nonn.bench.soak $(SOAK_MODELS) --clients 32 --seconds 60 --rounds 3 --out runs/soak

# Quick start: `make run` (set up, then run the embedded stack) and `make test`.
# Set-up is incremental: it reinstalls only when requirements.lock, pyproject.toml,
# display/package-lock.json or queue/pom.xml (the JVM jars, from Maven Central) changed.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-stamp
NPM_STAMP := display/node_modules/.setup-stamp
PEERS_VENV := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.setup-stamp
JARS   := jars
JARS_STAMP := $(JARS)/.setup-stamp
MVN    ?= mvn

.PHONY: run cluster test test-fast setup jars check-tools bench lint screenshots clean help

help:
	@echo "make run    set up, then run the whole stream on this machine (Ctrl-C stops it)"
	@echo "make cluster  the same stream on 3 Kafka brokers, 3 Cassandra nodes and a Spark master with 2 workers (about 8 GB)"
	@echo "make test   set up, then run the test suite"
	@echo "make test-fast  only the tests that start nothing (no broker, Spark, browser): seconds"
	@echo "make bench  set up, then run every benchmark in bench/"
	@echo "make lint   ruff and mypy"
	@echo "make screenshots  the README's pictures, from a real run (docs/images/)"
	@echo "make clean  remove the virtual environment, node modules and data/"

run: setup
	$(PY) -m stack

screenshots: setup
	$(PY) docs/screenshots.py

cluster: setup
	$(PY) -m stack --cluster

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest --fast -q

bench: setup $(PEERS_STAMP)
	$(PY) bench/run_all.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy common buffer input processing storage display stack

setup: check-tools $(STAMP) $(NPM_STAMP) $(JARS_STAMP)

jars: $(JARS_STAMP)

check-tools:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (found " + sys.version.split()[0] + "); set PYTHON=python3.11")'
	@command -v java >/dev/null 2>&1 || { echo "Java 17 or newer is needed for Spark (Debian: apt-get install openjdk-17-jre-headless)"; exit 1; }
	@command -v $(MVN) >/dev/null 2>&1 || { echo "Maven is needed to fetch Kafka's, Spark's and Cassandra's jars from Maven Central (Debian: apt-get install maven; macOS: brew install maven)"; exit 1; }
	@java -version 2>&1 | awk -F'"' '/version/ { split($$2, v, "."); if (v[1] < 17) { print "Java 17 or newer is needed for Spark (found " $$2 ")"; exit 1 } }'

$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	@echo "==> setting up $(VENV) (Python dependencies; pyspark is large, the first time takes a minute or two)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --progress-bar off -r requirements.lock -r requirements-dev.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# The peers the benchmarks compare with (Quix Streams, Pathway; bench/peers/): their own
# environment, as they pin confluent-kafka below the kit's; a .pth file lets
# it import the kit's other packages from $(VENV), after its own. For `make bench` only.
$(PEERS_STAMP): bench/peers/requirements.lock $(STAMP)
	@echo "==> setting up $(PEERS_VENV) (Quix Streams and Pathway, for the benchmarks; about 1.6 GB)"
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -c 'import sysconfig; from pathlib import Path; kit = Path("$(VENV)").resolve() / Path(sysconfig.get_paths()["purelib"]).relative_to(sysconfig.get_paths()["data"]); (Path(sysconfig.get_paths()["purelib"]) / "zz-streamkit-venv.pth").write_text(f"import site; site.addsitedir({str(kit)!r})\n")'
	$(PEERS_VENV)/bin/python -m pip install --quiet --progress-bar off -r bench/peers/requirements.lock
	touch $(PEERS_STAMP)

$(NPM_STAMP): display/package.json display/package-lock.json
	@echo "==> installing front-end libraries (npm ci in display/)"
	cd display && npm ci --no-audit --no-fund --loglevel=error
	touch $(NPM_STAMP)

# The JVM engines' jars (queue/pom.xml): Maven resolves them into its local repository
# (~/.m2, so a second run downloads nothing) and copies them to jars/kafka, jars/spark and
# jars/cassandra; each engine's classpath is a profile of its own (see the pom).
$(JARS_STAMP): queue/pom.xml
	@echo "==> fetching the JVM jars of queue/pom.xml from Maven Central into $(JARS)/ (Kafka's broker, Spark's Kafka connector, Cassandra; about 120 MB the first time)"
	rm -rf $(JARS)/kafka $(JARS)/spark $(JARS)/cassandra
	$(MVN) -B --no-transfer-progress -q -f queue/pom.xml -P kafka dependency:copy-dependencies@kafka dependency:copy@spark
	$(MVN) -B --no-transfer-progress -q -f queue/pom.xml -P cassandra dependency:copy-dependencies@cassandra
	@echo "    $$(ls $(JARS)/kafka | wc -l) jars in $(JARS)/kafka, $$(ls $(JARS)/spark | wc -l) in $(JARS)/spark, $$(ls $(JARS)/cassandra | wc -l) in $(JARS)/cassandra"
	touch $(JARS_STAMP)

clean:
	rm -rf $(VENV) $(PEERS_VENV) display/node_modules data $(JARS)

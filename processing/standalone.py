"""Spark standalone on one machine: a master and workers from the jars pyspark ships.

pyspark's wheel has no ``sbin/start-master.sh``; its ``bin/spark-class`` runs the
daemons' main classes (``org.apache.spark.deploy.master.Master`` and ``...worker.Worker``),
which is what those scripts do. ``python -m stack --cluster`` runs the master on the first
address of CLUSTER_HOSTS and one worker on each other one, each under its supervisor, and
submits the kit's streaming application to the master with ``spark-submit --master
spark://...`` (:func:`submit_argv`).

The master's web UI (``--webui-port``) answers ``/json`` with its workers and
applications and their states; :func:`master_state` reads it.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.jvm import free_port

__all__ = ["SparkDaemon", "master_state", "spark_home", "submit_argv"]

ROOT = Path(__file__).resolve().parent.parent
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
#: Heap of the master and of each worker daemon (SPARK_DAEMON_MEMORY; Spark's default is 1g).
#: They only schedule and launch executors: 256m was plenty under the fault test.
DAEMON_HEAP = "256m"


def spark_home() -> Path:
    """The Spark inside the installed pyspark (its ``bin/spark-class`` and ``jars/``)."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


@dataclass
class SparkDaemon:
    """The argv, environment and addresses of one standalone daemon (master or worker)."""

    name: str
    host: str
    port: int
    webui_port: int
    log_path: Path
    main_class: str
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"spark://{self.host}:{self.port}"

    @property
    def webui(self) -> str:
        return f"http://{self.host}:{self.webui_port}"

    def argv(self) -> list[str]:
        return [str(spark_home() / "bin" / "spark-class"), self.main_class, "--host", self.host,
                "--port", str(self.port), "--webui-port", str(self.webui_port), *self.args]

    def env(self, base: dict[str, str]) -> dict[str, str]:
        # SPARK_LOCAL_IP: the web UI and every other socket bind this node's address only.
        return {**base, "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": self.host,
                "SPARK_DAEMON_MEMORY": DAEMON_HEAP, "PYSPARK_PYTHON": sys.executable,
                "SPARK_NO_DAEMONIZE": "1"}


def master(host: str, port: int, log_dir: Path) -> SparkDaemon:
    return SparkDaemon("spark-master", host, port or free_port(host), free_port(host),
                       log_dir / "spark-master.log", MASTER_CLASS)


def worker(index: int, host: str, master_url: str, cores: int, memory: str, work_dir: Path,
           log_dir: Path) -> SparkDaemon:
    """A worker offering ``cores`` task slots and ``memory`` for its executors."""
    work_dir.mkdir(parents=True, exist_ok=True)
    return SparkDaemon(f"spark-worker-{index}", host, free_port(host), free_port(host),
                       log_dir / f"spark-worker-{index}.log", WORKER_CLASS,
                       ["--cores", str(cores), "--memory", memory, "--work-dir", str(work_dir),
                        master_url])


def executor_memory_mib(memory: str) -> int:
    units = {"k": 1 / 1024, "m": 1, "g": 1024}
    return int(float(memory[:-1]) * units[memory[-1].lower()])


def worker_memory(executor_memory: str) -> str:
    """What a worker offers: one executor's heap plus Spark's overhead for it (10%, 384m at
    least), so that exactly one executor fits per worker."""
    heap = executor_memory_mib(executor_memory)
    return f"{heap + max(384, heap // 10)}m"


def submit_argv(master_url: str, app: Sequence[str], executor_memory: str, cores_max: int,
                driver_host: str, driver_memory: str, extra: Sequence[str] = ()) -> list[str]:
    """``bin/spark-submit --master spark://...`` of ``app`` (a script and its arguments).

    The driver runs in the submitting process (client mode), so the supervisor that runs this
    argv restarts the whole application when it dies; executors run on the workers. An
    executor lost with its worker is not the application's fault: Spark runs its tasks again on
    another executor without counting them towards ``spark.task.maxFailures``.
    """
    return [str(ROOT / "bin" / "spark-submit"), "--master", master_url,
            "--deploy-mode", "client",
            "--driver-memory", driver_memory,
            "--executor-memory", executor_memory,
            "--conf", f"spark.cores.max={cores_max}",
            "--conf", f"spark.driver.host={driver_host}",
            "--conf", f"spark.driver.bindAddress={driver_host}",
            "--conf", "spark.driver.extraJavaOptions=-XX:+UseSerialGC -Xss4m",
            "--conf", "spark.executor.extraJavaOptions=-XX:+UseSerialGC -Xss4m",
            "--conf", "spark.ui.enabled=false",
            *extra, *app]


def master_state(webui: str, timeout_s: float = 2.0) -> dict[str, Any]:
    """The master's ``/json``: its status, workers (``state`` ALIVE or DEAD) and applications."""
    with urllib.request.urlopen(f"{webui}/json", timeout=timeout_s) as response:
        return dict(json.load(response))


def alive_workers(webui: str) -> int:
    try:
        state = master_state(webui)
    except (OSError, ValueError):
        return 0
    return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")


def python_env() -> dict[str, str]:
    """What executors need to run the kit's Python: this interpreter (the venv's)."""
    return {"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}

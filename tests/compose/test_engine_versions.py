"""The compose stack runs the JVM engines of queue/pom.xml, the kit's one list of their versions.

The kafka image's tag is ``kafka.version``, the cassandra image's ``cassandra.version``; the
processing image's Spark is ``spark.version`` (its SPARK_VERSION, pyspark in requirements.lock)
and its Kafka connector is what the pom's ``spark`` execution copies from Maven Central (never
resolved with ``--packages``); the broker has the settings of queue/server.properties, the
embedded broker's.
"""

from __future__ import annotations

import re
from importlib import metadata

from tests.compose import model

SERVICES = model.services()
POM = model.pom_properties()
PROCESSING = model.dockerfile(model.ROOT / "processing" / "Dockerfile")
#: Broker properties whose compose value differs from queue/server.properties, with why.
BROKER_DIFFERENCES = {
    "listener.security.protocol.map": "compose adds the EXTERNAL listener (host debugging)",
}


def _connector_stage() -> model.Stage:
    """The processing image's stage that copies queue/pom.xml in (and runs Maven on it)."""
    stages = [s for s in PROCESSING.stages
              if any(src is None and "queue/pom.xml" in paths for src, paths, _ in s.copies())]
    assert len(stages) == 1, "processing/Dockerfile: one stage must COPY queue/pom.xml and run it"
    return stages[0]


def test_the_kafka_image_is_the_poms_kafka_version() -> None:
    image = SERVICES["kafka"]["image"]
    name, _, tag = image.partition(":")
    assert name == "apache/kafka", image
    assert tag.split("@")[0] == POM["kafka.version"], (
        f"the kafka service runs {image}; queue/pom.xml's kafka.version is {POM['kafka.version']}")


def test_the_cassandra_image_is_the_poms_cassandra_version() -> None:
    # The embedded stack runs org.apache.cassandra:cassandra-all at cassandra.version.
    image = SERVICES["cassandra"]["image"]
    name, _, tag = image.partition(":")
    assert name == "cassandra", f"the official image, got {image}"
    assert tag.split("@")[0] == POM["cassandra.version"], (
        f"the cassandra service runs {image}; queue/pom.xml's cassandra.version is "
        f"{POM['cassandra.version']}")


def test_spark_is_one_version_in_the_pom_the_lock_and_the_processing_image() -> None:
    spark = POM["spark.version"]
    assert model.lock()["pyspark"][1] == spark, "pyspark in requirements.lock != spark.version"
    assert PROCESSING.global_args["SPARK_VERSION"] == spark, (
        "processing/Dockerfile SPARK_VERSION != spark.version in queue/pom.xml")
    jars = [str(f) for f in metadata.distribution("pyspark").files or []
            if re.search(r"pyspark/jars/spark-core_[\d.]+-[\w.]+\.jar$", str(f))]
    assert jars, "pyspark's spark-core jar not found in this environment"
    scala, version = re.search(r"spark-core_([\d.]+)-([\w.]+)\.jar$", jars[0]).groups()  # type: ignore[union-attr]
    assert version == spark, "the installed pyspark is not the pinned one: run make setup"
    assert PROCESSING.global_args["SCALA_BINARY_VERSION"] == scala
    # The connector of the pom is built for that Spark and that Scala.
    connector = ("org.apache.spark", f"spark-sql-kafka-0-10_{scala}", "${spark.version}")
    assert connector in model.pom_execution("spark").artifacts


def test_the_image_checks_both_pins_when_it_is_built() -> None:
    venv = " ".join(PROCESSING.stage("venv").args("RUN"))
    assert "version('pyspark')" in venv and "${SPARK_VERSION}" in venv, (
        "the venv stage must fail when pyspark is not SPARK_VERSION")
    run = " ".join(_connector_stage().args("RUN"))
    assert "<spark.version>${SPARK_VERSION}</spark.version>" in run, (
        "the Maven stage must fail when SPARK_VERSION is not spark.version in queue/pom.xml")
    for stage in (PROCESSING.stage("venv"), _connector_stage()):
        assert "SPARK_VERSION" in [a.split("=")[0] for a in stage.args("ARG")], stage.name


def test_the_processing_image_gets_the_connector_from_the_pom_not_from_packages() -> None:
    everything = " ".join(rest for s in PROCESSING.stages for _, rest in s.instructions)
    for resolver in ("--packages", "spark.jars.packages", "spark.jars.ivy"):
        assert resolver not in everything, f"processing/Dockerfile uses {resolver}: use queue/pom.xml"
    stage = _connector_stage()
    assert re.fullmatch(r"maven:\d+\.\d+\.\d+-eclipse-temurin-17", stage.image), (
        f"the Maven stage: an official maven image on JDK 17, got {stage.image}")
    run = " ".join(stage.args("RUN"))
    assert re.search(r"\bmvn\b.*-f queue/pom\.xml", run)
    assert "dependency:copy@spark" in run
    assert "@kafka" not in run, "the image needs Spark's connector only, not the broker's jars"
    jars_dir = re.search(r"-Djars\.dir=(/\S+)", run)
    assert jars_dir, "pass -Djars.dir=/absolute/path (the pom's default is beside the repository)"
    spark = model.pom_execution("spark")
    assert spark.goals == ("copy",)
    out = model.interpolate(spark.output_directory, {**POM, "jars.dir": jars_dir.group(1)})
    assert out.startswith("/"), out
    # The build fails unless the connector jar is there, and lists every jar in spark.jars.
    assert f"{out}/spark-sql-kafka-0-10_${{SCALA_BINARY_VERSION}}-${{SPARK_VERSION}}.jar" in run
    assert f"{out}/*.jar" in run and "spark.jars" in run and "spark-defaults.conf" in run
    conf_dir = re.search(r"(/\S+)/spark-defaults\.conf", run).group(1)  # type: ignore[union-attr]
    # The image ships the jars and that file, and spark-submit reads it.
    copied = {(src, tuple(paths), dest) for src, paths, dest in PROCESSING.final.copies()}
    assert (stage.name, (out,), out) in copied, f"the image must COPY --from={stage.name} {out} {out}"
    assert (stage.name, (conf_dir,), conf_dir) in copied
    env = PROCESSING.final.env()
    assert env.get("SPARK_CONF_DIR") == conf_dir
    # The kit's session (processing.spark.connector_jars) takes JARS_DIR/spark/*.jar.
    assert env.get("JARS_DIR") == jars_dir.group(1), "JARS_DIR must be where the jars are"
    assert out == f"{env['JARS_DIR']}/spark", f"the jars must be in JARS_DIR/spark, got {out}"
    source = (model.ROOT / "processing" / "spark.py").read_text()
    assert re.search(r'jars_dir\s*/\s*"spark"', source), "processing.spark no longer reads JARS_DIR/spark"


def test_spark_services_take_the_connector_from_the_image() -> None:
    spark_services = model.spark_services()
    assert {"processing", "census"} <= set(spark_services)
    for name, service in spark_services.items():
        args = model.command(service)
        for flag in ("--packages", "--jars", "--repositories"):
            assert flag not in args, f"{name}: {flag} (the image has the jars in JARS_DIR)"
        confs = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--conf"]
        assert not [c for c in confs if c.startswith("spark.jars")], f"{name}: {confs}"
        # pyspark passes PYSPARK_SUBMIT_ARGS to the spark-submit it starts.
        env = model.environment(service)
        assert "PYSPARK_SUBMIT_ARGS" not in env, f"{name}: the session sets Spark's options"
        assert "JARS_DIR" not in env, f"{name}: JARS_DIR is the image's (where its jars are)"


def test_the_kafka_service_has_the_settings_of_server_properties() -> None:
    env = model.environment(SERVICES["kafka"])
    wrong = []
    for prop, value in model.server_properties().items():
        name = model.kafka_env_name(prop)
        if name not in env:
            wrong.append(f"{name} missing (queue/server.properties: {prop}={value})")
        elif prop in BROKER_DIFFERENCES:
            continue
        elif env[name] != value:
            wrong.append(f"{name}={env[name]} but queue/server.properties has {prop}={value}")
    assert not wrong, "the kafka service must run the embedded broker's settings:\n" + "\n".join(wrong)
    # The one difference: compose's map holds the embedded broker's, plus its own listeners.
    embedded = dict(i.split(":") for i in model.server_properties()["listener.security.protocol.map"].split(","))
    composed = dict(i.split(":") for i in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert embedded.items() <= composed.items()


def test_the_kafka_service_keeps_retention_and_small_machine_settings() -> None:
    # What matters on a long run of a laptop, named outright so that a trimmed
    # queue/server.properties cannot silently drop them from both.
    env = model.environment(SERVICES["kafka"])
    for name in ("KAFKA_LOG_RETENTION_HOURS", "KAFKA_LOG_RETENTION_BYTES", "KAFKA_LOG_SEGMENT_BYTES",
                 "KAFKA_LOG_CLEANER_DEDUPE_BUFFER_SIZE", "KAFKA_NUM_NETWORK_THREADS",
                 "KAFKA_NUM_IO_THREADS"):
        assert int(env[name]) > 0, name
    assert int(env["KAFKA_LOG_SEGMENT_BYTES"]) <= int(env["KAFKA_LOG_RETENTION_BYTES"]), (
        "a segment is deleted whole: it must be smaller than the retention size")

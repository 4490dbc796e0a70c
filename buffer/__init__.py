"""The buffer stage: Apache Kafka between the sources and the jobs.

What is not Python lives in ``queue/`` (``topics.toml``: the topics, defined once;
``pom.xml``: the JVM engines' versions; ``server.properties`` and ``log4j2.properties``:
the embedded broker). This package holds the code:

* :mod:`buffer.topics`: the topics of ``queue/topics.toml`` as constants;
* :mod:`buffer.kafka`: clients (producers, consumers, followers of a topic's end, admin);
* :mod:`buffer.broker`: the embedded broker, one KRaft node started from Maven jars;
* ``python -m buffer``: create the missing topics (the compose stack's ``topics`` service).

Not named ``queue``: that would shadow Python's standard library module.
"""

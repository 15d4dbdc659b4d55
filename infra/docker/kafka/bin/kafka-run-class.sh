#!/usr/bin/env bash
# kafka-run-class.sh CLASS [ARGS...]: runs a class of the Kafka jars (/opt/kafka/libs, resolved
# from Maven Central by scripts/kafka.mjs) with the variables Kafka's own script reads:
# KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_LOG4J_OPTS, KAFKA_OPTS, JAVA_HOME.
set -euo pipefail
home=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
(($# > 0)) || {
  echo "usage: kafka-run-class.sh CLASS [ARGS...]" >&2
  exit 2
}
java=${JAVA_HOME:+$JAVA_HOME/bin/}java
# A command-line tool is a short-lived JVM: the defaults favour start-up time over peak speed
# (the compose health check runs kafka-topics.sh every few seconds on a 2-core machine).
: "${KAFKA_HEAP_OPTS:=-Xmx256M}"
: "${KAFKA_JVM_PERFORMANCE_OPTS:=-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto -Djava.awt.headless=true}"
: "${KAFKA_LOG4J_OPTS:=-Dlog4j2.configurationFile=$home/config/tools-log4j2.properties}"
# Word splitting is wanted: each variable holds several JVM options, as in Kafka's own script.
# shellcheck disable=SC2086
exec "$java" $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS $KAFKA_LOG4J_OPTS ${KAFKA_OPTS:-} -cp "$home/libs/*" "$@"

#!/usr/bin/env bash
# The scripts of Kafka's bin/ directory that the stack uses, by the name they are called with
# (each is a symbolic link to this file): the same classes as in Kafka's distribution.
set -euo pipefail
bin=$(dirname "$(readlink -f "$0")")
case $(basename "$0") in
  kafka-server-start.sh)
    # The broker: Kafka's defaults (kafka-server-start.sh, kafka-run-class.sh), logs on stdout.
    export KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G}
    export KAFKA_JVM_PERFORMANCE_OPTS=${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true}
    export KAFKA_LOG4J_OPTS=${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=$bin/../config/log4j2.properties}
    class=kafka.Kafka
    ;;
  kafka-storage.sh) class=kafka.tools.StorageTool ;;
  kafka-topics.sh) class=org.apache.kafka.tools.TopicCommand ;;
  kafka-console-producer.sh) class=org.apache.kafka.tools.ConsoleProducer ;;
  kafka-console-consumer.sh) class=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
  kafka-consumer-groups.sh) class=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
  kafka-get-offsets.sh) class=org.apache.kafka.tools.GetOffsetShell ;;
  kafka-metadata-quorum.sh) class=org.apache.kafka.tools.MetadataQuorumCommand ;;
  kafka-broker-api-versions.sh) class=org.apache.kafka.tools.BrokerApiVersionsCommand ;;
  *)
    echo "kafka-tool.sh: unknown tool $(basename "$0")" >&2
    exit 2
    ;;
esac
exec "$bin/kafka-run-class.sh" "$class" "$@"

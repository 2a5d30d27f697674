"""The Kafka broker that ``infra/up`` starts answers: a topic is created and listed."""

from __future__ import annotations

import uuid

from confluent_kafka.admin import AdminClient, NewTopic


def test_the_broker_creates_and_lists_a_topic(kafka_bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    metadata = admin.list_topics(timeout=10)
    assert metadata.brokers, "the broker answered with no brokers"

    topic = f"replenish.test.{uuid.uuid4().hex[:12]}"
    futures = admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)],
                                  operation_timeout=10, request_timeout=15)
    futures[topic].result(timeout=20)
    try:
        listed = admin.list_topics(topic=topic, timeout=10).topics[topic]
        assert listed.error is None
        assert sorted(listed.partitions) == [0, 1, 2]
        assert topic in admin.list_topics(timeout=10).topics
    finally:
        admin.delete_topics([topic], operation_timeout=10)[topic].result(timeout=20)

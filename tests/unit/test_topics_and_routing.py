"""Where an event goes on Kafka: its topic and key (``streams.topics.route``), and the
partition a key lands on, as Kafka's Java clients and librdkafka's ``murmur2_random`` put it."""

from __future__ import annotations

import pytest

from streams.topics import EVENTS, REFERENCE, Topics, partition_of, route, topic_specs

T = Topics()


def no_gtins(_gtin: str) -> str | None:
    return None


def test_stock_facts_are_keyed_by_stock_point_and_reference_data_goes_to_the_reference_topic() -> None:
    use = {"type": "usage", "sku": "GLV", "location": "W3"}
    assert route(use, T, no_gtins) == (EVENTS, "GLV@W3")
    assert route({"type": "transfer", "sku": "GLV", "from_location": "CS", "to_location": "W3"},
                 T, no_gtins) == (EVENTS, "GLV@W3")  # where it arrives: the processor's stock point
    assert route({"type": "item_registered", "sku": "GLV"}, T, no_gtins) == (REFERENCE, "item:GLV")
    assert route({"type": "location_registered", "location": "W3"}, T, no_gtins) == (REFERENCE, "location:W3")
    assert route({"type": "recall_issued", "reference": "FSCA-1", "sku": "GLV"}, T, no_gtins) == (
        REFERENCE, "recall:FSCA-1")
    assert route({"type": "lot_changed", "sku": "GLV", "lot": "L1"}, T, no_gtins) == (REFERENCE, "lot:GLV/L1")
    assert route({"type": "po_issued", "po_id": "PO-7"}, T, no_gtins) == (EVENTS, "po:PO-7")


def test_a_scan_naming_only_a_gtin_is_keyed_by_the_sku_it_belongs_to() -> None:
    gtins = {"09501101020917": "GLV"}
    scan = {"type": "usage", "gtin": "09501101020917", "location": "W3"}
    assert route(scan, T, gtins.get) == (EVENTS, "GLV@W3")
    barcode = {"type": "usage", "barcode": "]d201095011010209171727063010L1", "location": "W3"}
    assert route(barcode, T, gtins.get) == (EVENTS, "GLV@W3")
    assert route(scan, T, no_gtins) == (EVENTS, "gtin:09501101020917@W3")  # not known (yet)


def test_a_case_is_keyed_by_a_hash_of_its_id_never_the_id() -> None:
    topic, key = route({"type": "surgery_cancelled", "case_id": "OR-2026-17"}, T, no_gtins)
    assert topic == EVENTS and key is not None and key.startswith("case:") and "OR-2026" not in key
    assert route({"type": "surgery_completed", "case_id": "OR-2026-17"}, T, no_gtins)[1] == key


def test_what_cannot_be_keyed_goes_by_event_id_or_anywhere() -> None:
    assert route({"event_id": "x1", "type": "usage"}, T, no_gtins) == (EVENTS, "event:x1")
    assert route({"type": "nonsense"}, T, no_gtins) == (EVENTS, None)


def test_keys_hash_to_partitions_as_kafkas_java_clients_do() -> None:
    # Kafka's own murmur2 test vectors (org.apache.kafka.common.utils.UtilsTest).
    assert partition_of("21", 2**31 - 1) == (-973932308 & 0x7FFFFFFF) % (2**31 - 1)
    assert partition_of("abc", 1000) == 479470107 % 1000
    assert {partition_of(f"GLV@W{i}", 6) for i in range(1, 7)} <= set(range(6))


def test_topics_take_a_prefix_and_the_reference_topic_is_compacted_with_one_partition() -> None:
    specs = {s.name: s for s in topic_specs(Topics("t1."), partitions=12, replication=3)}
    assert set(specs) == {f"t1.replenish.{n}.v1" for n in
                          ("events", "reference", "dead_letter", "decisions", "alerts", "outcomes")}
    reference = specs["t1.replenish.reference.v1"]
    assert (reference.partitions, reference.config["cleanup.policy"]) == (1, "compact")
    assert specs["t1.replenish.events.v1"].partitions == 12
    assert specs["t1.replenish.events.v1"].config["min.insync.replicas"] == "2"


def test_kafka_access_gives_every_client_the_same_security_and_hides_its_secrets() -> None:
    from streams.topics import KafkaAccess, kafka_config

    access = KafkaAccess("b1:9093,b2:9093", "SASL_SSL", "SCRAM-SHA-512", "svc", "s3cret", "/etc/ca.pem",
                         "/etc/client.pem", "/etc/client.key", "k3y")
    assert kafka_config(access) == {
        "bootstrap.servers": "b1:9093,b2:9093", "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc", "sasl.password": "s3cret", "ssl.ca.location": "/etc/ca.pem",
        "ssl.certificate.location": "/etc/client.pem", "ssl.key.location": "/etc/client.key",
        "ssl.key.password": "k3y"}
    assert "s3cret" not in repr(access) and "k3y" not in repr(access)
    assert kafka_config("b1:9092") == {"bootstrap.servers": "b1:9092", "security.protocol": "PLAINTEXT"}
    assert KafkaAccess("b1:9092").faust_credentials() is None
    sasl = KafkaAccess("b1:9092", "SASL_PLAINTEXT", "PLAIN", "svc", "pw").faust_credentials()
    assert (sasl.username, sasl.mechanism.value, sasl.ssl_context) == ("svc", "PLAIN", None)
    for bad in (dict(security_protocol="TLS"), dict(security_protocol="SASL_SSL", sasl_username="svc"),
                dict(security_protocol="SASL_SSL", sasl_mechanism="GSSAPI", sasl_username="u", sasl_password="p"),
                dict(security_protocol="SSL", ssl_certificate_location="/etc/client.pem")):
        with pytest.raises(ValueError):
            KafkaAccess("b1:9092", **bad)  # type: ignore[arg-type]

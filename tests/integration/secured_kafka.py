"""A second Apache Kafka broker for the transport-security tests: the same jars ``infra/up``
gathers, in KRaft mode, whose only client listener is SASL_SSL (SASL PLAIN over TLS) with a
certificate from a throwaway CA made here with ``cryptography``. The controller listens on
loopback in plain text, as ``infra/kafka/start``'s does."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
USER = "replenish"


@dataclass
class SecuredBroker:
    bootstrap: str
    ca: Path
    password: str
    proc: subprocess.Popen[bytes]
    log: Path

    def client(self, **overrides: str) -> dict[str, str]:
        """librdkafka's settings of an authenticated client."""
        return {"bootstrap.servers": self.bootstrap, "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
                "sasl.username": USER, "sasl.password": self.password, "ssl.ca.location": str(self.ca),
                **overrides}

    def settings(self) -> dict[str, str]:
        """The REPLENISH_KAFKA_* settings of our processes."""
        return {"REPLENISH_KAFKA_BOOTSTRAP": self.bootstrap, "REPLENISH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "REPLENISH_KAFKA_SASL_MECHANISM": "PLAIN", "REPLENISH_KAFKA_SASL_USERNAME": USER,
                "REPLENISH_KAFKA_SASL_PASSWORD": self.password, "REPLENISH_KAFKA_SSL_CA_LOCATION": str(self.ca)}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _pem_files(where: Path) -> tuple[Path, Path]:
    """A CA and a server certificate for 127.0.0.1 and localhost signed by it: (ca.pem,
    server.pem holding the server's PKCS#8 key and certificate chain)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "replenish test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_pem, server_pem = where / "ca.pem", where / "server.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server_pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM))
    return ca_pem, server_pem


def start_secured_broker(where: Path, port: int, controller_port: int, timeout_s: float = 120) -> SecuredBroker:
    """Start the broker in ``where`` and wait until an authenticated client reads its metadata."""
    from confluent_kafka.admin import AdminClient

    libs = subprocess.run(["bash", str(ROOT / "infra" / "kafka" / "install")], capture_output=True, text=True,
                          check=True).stdout.strip().splitlines()[-1]
    ca, server = _pem_files(where)
    password, broker_password = secrets.token_hex(16), secrets.token_hex(16)
    jaas = (f'org.apache.kafka.common.security.plain.PlainLoginModule required username="broker" '
            f'password="{broker_password}" user_broker="{broker_password}" user_{USER}="{password}";')
    props = where / "server.properties"
    props.write_text("\n".join([
        "process.roles=broker,controller", "node.id=1",
        f"controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}",
        f"listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "inter.broker.listener.name=SASL_SSL", "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
        "sasl.enabled.mechanisms=PLAIN", "sasl.mechanism.inter.broker.protocol=PLAIN",
        f"listener.name.sasl_ssl.plain.sasl.jaas.config={jaas}",
        "ssl.keystore.type=PEM", f"ssl.keystore.location={server}",
        "ssl.truststore.type=PEM", f"ssl.truststore.location={ca}",
        f"log.dirs={where / 'data'}", "num.partitions=1", "auto.create.topics.enable=false",
        "offsets.topic.replication.factor=1", "offsets.topic.num.partitions=4",
        "transaction.state.log.replication.factor=1", "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1", "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0", ""]))
    log4j = ROOT / "infra" / "kafka" / "log4j2.properties"
    java = ["java", "-Xms128m", "-Xmx512m", f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{libs}/*"]
    cluster = subprocess.run([*java, "kafka.tools.StorageTool", "random-uuid"], capture_output=True, text=True,
                             check=True).stdout.strip()
    subprocess.run([*java, "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster, "-c", str(props)],
                   capture_output=True, text=True, check=True)
    log = where / "kafka.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*java, "kafka.Kafka", str(props)], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=os.environ.copy())
    broker = SecuredBroker(f"127.0.0.1:{port}", ca, password, proc, log)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if AdminClient(broker.client(**{"socket.timeout.ms": "3000"})).list_topics(timeout=3).brokers:
                return broker
        except Exception:  # (not up yet)
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            broker.stop()
            raise RuntimeError(f"the SASL_SSL broker did not start:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.5)

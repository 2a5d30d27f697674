"""ClickHouse's JDBC driver, as Metabase and DBeaver use it, run with the machine's Java.

The driver and what it needs come from Maven Central (``mvn dependency:copy-dependencies`` on a
small pom) into ``.infra-state/clickhouse-jdbc/<version>/`` once; a tiny Java program (below)
is compiled with ``javac`` at test time. It connects, lists the tables through the driver's
``DatabaseMetaData``, runs each query given and prints what it read as tab-separated lines:
``#product``, ``#table``, then per query ``#query``, ``#columns`` and ``#row`` lines, or
``#error`` with the driver's message. Nothing here skips: a failed fetch or compile fails.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The newest clickhouse-jdbc whose files Maven Central serves in full here; its "all" jar does
# not bundle slf4j, so the pom takes the driver's dependencies and a no-op logger.
JDBC_VERSION = "0.10.0"
SLF4J_NOP_VERSION = "2.0.17"
CACHE = ROOT / ".infra-state" / "clickhouse-jdbc" / JDBC_VERSION

POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>replenish.tests</groupId>
  <artifactId>bi-jdbc-probe</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>com.clickhouse</groupId><artifactId>clickhouse-jdbc</artifactId><version>{JDBC_VERSION}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-nop</artifactId><version>{SLF4J_NOP_VERSION}</version></dependency>
  </dependencies>
</project>
"""

PROBE = r"""
import java.sql.*;
import java.util.Properties;

/** Connects with the JDBC driver, lists the tables, runs the queries given, prints all it read. */
public class BiProbe {
    static String clean(String s) { return s == null ? "\\N" : s.replace('\t', ' ').replace('\n', ' '); }

    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.setProperty("user", args[1]);
        props.setProperty("password", args[2]);
        try (Connection c = DriverManager.getConnection(args[0], props)) {
            DatabaseMetaData md = c.getMetaData();
            System.out.println("#product\t" + md.getDatabaseProductName() + "\t" + md.getDatabaseProductVersion());
            try (ResultSet rs = md.getTables(null, null, "%", null)) {
                while (rs.next()) {
                    System.out.println("#table\t" + rs.getString("TABLE_SCHEM") + "\t" + rs.getString("TABLE_NAME"));
                }
            }
            for (int i = 3; i < args.length; i++) {
                System.out.println("#query\t" + (i - 3));
                try (Statement st = c.createStatement()) {
                    if (st.execute(args[i])) {
                        try (ResultSet rs = st.getResultSet()) {
                            ResultSetMetaData meta = rs.getMetaData();
                            int n = meta.getColumnCount();
                            StringBuilder head = new StringBuilder("#columns");
                            for (int k = 1; k <= n; k++) head.append('\t').append(meta.getColumnName(k));
                            System.out.println(head);
                            while (rs.next()) {
                                StringBuilder row = new StringBuilder("#row");
                                for (int k = 1; k <= n; k++) row.append('\t').append(clean(rs.getString(k)));
                                System.out.println(row);
                            }
                        }
                    } else {
                        System.out.println("#updated\t" + st.getUpdateCount());
                    }
                } catch (SQLException e) {
                    System.out.println("#error\t" + clean(String.valueOf(e.getMessage())));
                }
            }
        }
    }
}
"""


def driver_jars() -> Path:
    """The driver's jars (fetched from Maven Central the first time)."""
    if CACHE.is_dir() and any(CACHE.glob("clickhouse-jdbc-*.jar")):
        return CACHE
    mvn = shutil.which("mvn")
    if mvn is None:
        pytest.fail("mvn is not installed: the JDBC test needs it to fetch ClickHouse's JDBC driver "
                    "from Maven Central (apt-get install maven)", pytrace=False)
    work = CACHE.parent / f"{JDBC_VERSION}.fetching"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "pom.xml").write_text(POM)
    proc = subprocess.run([mvn, "-B", "-q", "-f", str(work / "pom.xml"), "dependency:copy-dependencies",
                           "-DincludeScope=runtime", f"-DoutputDirectory={work / 'jars'}"],
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    if proc.returncode != 0 or not any((work / "jars").glob("clickhouse-jdbc-*.jar")):
        pytest.fail(f"fetching com.clickhouse:clickhouse-jdbc:{JDBC_VERSION} from Maven Central failed "
                    f"(exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}", pytrace=False)
    shutil.rmtree(CACHE, ignore_errors=True)
    (work / "jars").rename(CACHE)
    shutil.rmtree(work, ignore_errors=True)
    return CACHE


@dataclass
class ProbeOutput:
    product: str = ""
    tables: list[tuple[str, str]] = field(default_factory=list)
    results: list[dict[str, object]] = field(default_factory=list)  # columns, rows, error
    text: str = ""


def run_probe(workdir: Path, url: str, user: str, password: str, queries: list[str]) -> ProbeOutput:
    """Compile the probe (once per ``workdir``) and run it against ``url`` with ``queries``."""
    for tool in ("java", "javac"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: the JDBC test runs the driver with the machine's "
                        "Java (apt-get install openjdk-17-jdk-headless)", pytrace=False)
    jars = driver_jars()
    classpath = f"{jars}/*"
    if not (workdir / "BiProbe.class").exists():
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "BiProbe.java").write_text(PROBE)
        javac = subprocess.run(["javac", "-cp", classpath, "-d", str(workdir), str(workdir / "BiProbe.java")],
                               capture_output=True, text=True, timeout=300)
        if javac.returncode != 0:
            pytest.fail(f"javac failed:\n{javac.stderr[-4000:]}", pytrace=False)
    proc = subprocess.run(["java", "-cp", f"{workdir}:{classpath}", "BiProbe", url, user, password, *queries],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"the JDBC probe failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}",
                    pytrace=False)
    out = ProbeOutput(text=proc.stdout + proc.stderr)
    current: dict[str, object] | None = None
    for line in proc.stdout.splitlines():
        tag, _, rest = line.partition("\t")
        parts = rest.split("\t")
        if tag == "#product":
            out.product = rest
        elif tag == "#table":
            out.tables.append((parts[0], parts[1]))
        elif tag == "#query":
            current = {"columns": [], "rows": [], "error": None}
            out.results.append(current)
        elif current is not None and tag == "#columns":
            current["columns"] = parts
        elif current is not None and tag == "#row":
            current["rows"].append(parts)  # type: ignore[union-attr]
        elif current is not None and tag == "#error":
            current["error"] = rest
    return out

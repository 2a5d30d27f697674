"""ClickHouse's HTTP interface over the embedded engine, read-only, for BI tools.

The subset that ``clickhouse-connect`` and ClickHouse's JDBC driver use for queries: ``/ping``,
the query in the URL (``query=``) and/or the body, a ``FORMAT`` clause or ``default_format``,
gzip/deflate response compression (``enable_http_compression=1``), ClickHouse's own LZ4 block
framing (``compress=1``, ``decompress=1``: what ClickHouse's JDBC driver asks for) and gzip
request bodies;
credentials as basic auth, ``X-ClickHouse-User``/``X-ClickHouse-Key`` headers or
``user``/``password`` parameters.

It runs in the service process, next to the API keys and the event store, so it is locked
down: queries run on an engine handle set to ``readonly=1`` with capped execution time and
memory; only SELECT, SHOW, DESCRIBE, EXISTS and EXPLAIN are accepted; ClickHouse's own parser
(``EXPLAIN AST``) names every table and function a query touches, and only the projection
database, ``system`` metadata tables and ``INFORMATION_SCHEMA`` are readable; table functions
other than a few generators, and the functions that read files or load models (``file`` reads
``/proc/self/environ`` even in read-only mode), are refused, as are ``INTO OUTFILE`` and
several statements at once. Settings sent by the client are ignored (the handle is read-only).
"""

from __future__ import annotations

import base64
import gzip
import hmac
import re
import struct
import uuid
import zlib
from dataclasses import dataclass
from typing import Any

import lz4.block
from clickhouse_cityhash.cityhash import CityHash128
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

LIMITS = {"max_execution_time": 30, "max_memory_usage": 4_000_000_000, "max_result_rows": 5_000_000,
          "result_overflow_mode": "throw"}
STATEMENTS = ("SelectWithUnionQuery", "ShowTables", "ShowCreateTableQuery", "ExistsTableQuery",
              "DescribeQuery", "Explain")
SYSTEM_TABLES = frozenset({
    "databases", "tables", "columns", "functions", "table_functions", "data_type_families",
    "table_engines", "formats", "one", "numbers", "build_options", "collations", "time_zones",
    "contributors", "settings", "aggregate_function_combinators", "keywords"})
SCHEMA_DATABASES = frozenset({"information_schema", "INFORMATION_SCHEMA"})
TABLE_FUNCTIONS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series",
                             "generateseries", "values", "null", "view", "format"})
FUNCTIONS_DENIED = frozenset({"file", "catboostevaluate", "naivebayesclassifier", "getserversetting",
                              "dictget", "dictgetordefault", "dictgetornull", "dicthas", "filesystemavailable",
                              "filesystemcapacity", "filesystemunreserved", "url", "s3", "remote"})
_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_OUTFILE = re.compile(r"\bINTO\s+OUTFILE\b", re.IGNORECASE)
_CONTENT_TYPES = {"JSON": "application/json", "JSONCompact": "application/json",
                  "JSONEachRow": "application/x-ndjson", "CSV": "text/csv", "CSVWithNames": "text/csv",
                  "TabSeparated": "text/tab-separated-values",
                  "TabSeparatedWithNames": "text/tab-separated-values",
                  "TabSeparatedWithNamesAndTypes": "text/tab-separated-values"}


class Refused(Exception):
    """A query the BI interface does not run (ClickHouse code 497, ACCESS_DENIED)."""


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str

    def check(self, user: str | None, password: str | None) -> bool:
        return (user is not None and hmac.compare_digest(user.encode(), self.user.encode())
                and hmac.compare_digest((password or "").encode(), self.password.encode()))


def split_format(query: str, default: str) -> tuple[str, str]:
    """The query without a trailing ``FORMAT x`` (and ``;``), and the format to answer in."""
    q = query.strip()
    m = _FORMAT.search(q)
    if m:
        return q[:m.start()].rstrip(), m.group(1)
    return q.rstrip(";").rstrip(), default


def check_query(query: str, database: str, explain: Any) -> None:
    """Refuse what the BI interface does not allow. ``explain(sql)`` returns ClickHouse's
    ``EXPLAIN AST`` of ``sql`` as text (so the engine's own parser reads the query)."""
    if ";" in query:
        raise Refused("one statement per request")
    if _OUTFILE.search(query):
        raise Refused("INTO OUTFILE is not allowed")
    try:
        ast = explain(f"EXPLAIN AST {query}")
    except Exception as exc:  # a syntax error: say so in ClickHouse's words
        raise Refused(str(exc).splitlines()[0]) from None
    lines = ast.splitlines()
    head = lines[0].split(" ")[0] if lines else ""
    if head not in STATEMENTS:
        raise Refused(f"only SELECT, SHOW, DESCRIBE, EXISTS and EXPLAIN are allowed, not {head or 'this'}")
    for i, line in enumerate(lines):
        text = line.strip()
        if text.startswith("TableIdentifier "):
            _check_table(text.split(" ")[1], database)
        elif text.startswith("Function "):
            name = text.split(" ")[1]
            if name.lower() in FUNCTIONS_DENIED or name.lower().startswith("dictget"):
                raise Refused(f"the function {name} is not allowed")
            parent = _parent(lines, i)
            if parent.startswith("TableExpression") and name.lower() not in TABLE_FUNCTIONS:
                raise Refused(f"the table function {name} is not allowed")


def _parent(lines: list[str], i: int) -> str:
    depth = len(lines[i]) - len(lines[i].lstrip(" "))
    for j in range(i - 1, -1, -1):
        if len(lines[j]) - len(lines[j].lstrip(" ")) < depth:
            return lines[j].strip()
    return ""


def _check_table(name: str, database: str) -> None:
    db, _, table = name.rpartition(".")
    if not db or db == database:
        return
    if db == "system" and table in SYSTEM_TABLES:
        return
    if db in SCHEMA_DATABASES:
        return
    raise Refused(f"the table {name} is not readable here")


class BiServer:
    """The HTTP interface: a Starlette app over one read-only engine handle.

    ``client`` is a ``clickhouse-connect`` client on the projection database created with
    ``read_only_settings()`` (the embedded engine handle stays read-only for its lifetime).
    """

    def __init__(self, client: Any, database: str, credentials: Credentials,
                 version: str | None = None) -> None:
        self.client = client
        self.database = database
        self.credentials = credentials
        self.version = version or client.server_version
        self.app = Starlette(routes=[Route("/ping", self.ping, methods=["GET", "HEAD"]),
                                     Route("/", self.root, methods=["GET", "POST", "HEAD"])])

    async def ping(self, request: Request) -> Response:
        return PlainTextResponse("Ok.\n")

    def _user(self, request: Request) -> tuple[str | None, str | None]:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                return user, password
            except (ValueError, UnicodeDecodeError):
                return None, None
        if "x-clickhouse-user" in request.headers:
            return request.headers["x-clickhouse-user"], request.headers.get("x-clickhouse-key", "")
        params = request.query_params
        return params.get("user"), params.get("password")

    async def root(self, request: Request) -> Response:
        params = request.query_params
        body = await request.body()
        if request.headers.get("content-encoding", "").lower() == "gzip" and body:
            body = gzip.decompress(body)
        if params.get("decompress") == "1" and body:
            try:
                body = native_decompress(body)
            except ValueError as exc:
                return _error(432, "UNKNOWN_CODEC", str(exc), 400)
        query = params.get("query", "")
        if request.method == "POST" and body:
            query = f"{query}\n{body.decode()}" if query else body.decode()
        if not query.strip():
            return PlainTextResponse("Ok.\n")
        if not self.credentials.check(*self._user(request)):
            return _error(516, "AUTHENTICATION_FAILED", "Authentication failed: password is incorrect, "
                          "or there is no user with such name.", 401)
        wanted = params.get("database") or request.headers.get("x-clickhouse-database")
        if wanted and wanted != self.database:
            return _error(81, "UNKNOWN_DATABASE", f"Database {wanted} is not readable here", 404)
        sql, fmt = split_format(query, params.get("default_format")
                                or request.headers.get("x-clickhouse-format") or "TabSeparated")
        query_id = params.get("query_id") or str(uuid.uuid4())
        # Query parameters ({name:Type} in the query) arrive as param_<name>, escaped as
        # ClickHouse's text format escapes; the client escapes them again.
        bound = {k[6:]: re.sub(r"\\(.)", r"\1", v, flags=re.S)
                 for k, v in params.items() if k.startswith("param_")}
        try:
            check_query(sql, self.database, lambda q: self._explain(q, bound))
            data = await run_in_threadpool(self.client.raw_query, sql, parameters=bound or None, fmt=fmt)
        except Refused as exc:
            return _error(497, "ACCESS_DENIED", str(exc), 403)
        except Exception as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return _error(_code(message), "", message, 500)
        headers = {"X-ClickHouse-Format": fmt, "X-ClickHouse-Query-Id": query_id,
                   "X-ClickHouse-Timezone": "UTC", "X-ClickHouse-Server-Display-Name": "replenish",
                   "X-ClickHouse-Summary": '{"read_rows":"0","read_bytes":"0","written_rows":"0",'
                                           '"written_bytes":"0","total_rows_to_read":"0"}'}
        if params.get("compress") == "1":
            data = native_compress(data)
        elif params.get("enable_http_compression") == "1":
            accepted = request.headers.get("accept-encoding", "").lower()
            if "gzip" in accepted:
                data, headers["Content-Encoding"] = gzip.compress(data, compresslevel=3), "gzip"
            elif "deflate" in accepted:
                data, headers["Content-Encoding"] = zlib.compress(data, 3), "deflate"
        return Response(data, headers=headers,
                        media_type=_CONTENT_TYPES.get(fmt, "application/octet-stream"))

    def _explain(self, sql: str, bound: dict[str, str]) -> str:
        return self.client.raw_query(sql, parameters=bound or None, fmt="TabSeparatedRaw").decode()


def _code(message: str) -> int:
    m = re.search(r"Code: (\d+)", message)
    return int(m.group(1)) if m else 1002


def _error(code: int, name: str, message: str, status: int) -> Response:
    text = f"Code: {code}. DB::Exception: {message}{f' ({name})' if name else ''}\n"
    return PlainTextResponse(text, status_code=status, headers={"X-ClickHouse-Exception-Code": str(code)})


# ClickHouse's compressed block: a CityHash128 (v1.0.2) checksum of the rest, then the method
# (0x82: LZ4), the compressed size with this 9-byte header, the uncompressed size, the data.
_LZ4 = 0x82
_BLOCK = 1 << 20


def native_compress(data: bytes) -> bytes:
    """``data`` in ClickHouse's LZ4 block framing (the HTTP interface's ``compress=1``)."""
    out = bytearray()
    for i in range(0, len(data), _BLOCK):
        chunk = data[i:i + _BLOCK]
        packed = lz4.block.compress(chunk, store_size=False)
        block = struct.pack("<BII", _LZ4, len(packed) + 9, len(chunk)) + packed
        checksum = CityHash128(block)
        out += struct.pack("<QQ", checksum >> 64, checksum & 0xFFFFFFFFFFFFFFFF) + block
    return bytes(out)


def native_decompress(data: bytes) -> bytes:
    """The data of a body in ClickHouse's block framing (``decompress=1``), checksums checked."""
    out, i = bytearray(), 0
    while i < len(data):
        if len(data) - i < 25:
            raise ValueError("a compressed block is cut short")
        first, second = struct.unpack_from("<QQ", data, i)
        method, size, plain = struct.unpack_from("<BII", data, i + 16)
        block = data[i + 16:i + 16 + size]
        if len(block) != size or CityHash128(block) != (first << 64 | second):
            raise ValueError("a compressed block's checksum does not match")
        if method == _LZ4:
            out += lz4.block.decompress(block[9:], uncompressed_size=plain)
        elif method == 0x02:  # none
            out += block[9:]
        else:
            raise ValueError(f"compression method 0x{method:02x} is not supported (LZ4 and none are)")
        i += 16 + size
    return bytes(out)


def read_only_settings() -> dict[str, Any]:
    """Settings for the BI engine handle, ``readonly`` last so the limits are set first."""
    return {**LIMITS, "readonly": 1}

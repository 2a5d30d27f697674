"""The ``replenish`` command line."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import uvicorn
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from infra.settings import Settings, SettingsError

if TYPE_CHECKING:
    from streams.store import EventStore

app = typer.Typer(help="Real-time, event-sourced replenishment for hospital supply chains.",
                  no_args_is_help=True, add_completion=False)
audit_app = typer.Typer(help="Audit the event store.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
console = Console()


def _settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides).prepared()  # type: ignore[arg-type]
    except SettingsError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def _print_keys(settings: Settings) -> None:
    table = Table(title="API keys (development mode: invented for this run)")
    table.add_column("role")
    table.add_column("key")
    for key, principal in settings.principals().items():
        table.add_row(principal.role, key)
    console.print(table)
    password = settings.bi_password.get_secret_value()
    if password and settings.profile == "embedded":
        console.print(f"BI access (ClickHouse HTTP interface, read-only): "
                      f"http://{settings.clickhouse_http_host}:{settings.clickhouse_http_port}  "
                      f"user [bold]{settings.bi_user or 'bi'}[/bold]  password [bold]{password}[/bold]  "
                      f"database {settings.clickhouse_database}")


# A stop waits this long for requests in flight, then ends open alert streams (Server-Sent
# Events never finish on their own; their clients reconnect with Last-Event-ID).
GRACEFUL_SHUTDOWN_SECONDS = 3.0


class BackgroundServer:
    """uvicorn in a thread, for ``demo``: one worker, as the embedded store requires."""

    def __init__(self, settings: Settings, host: str, port: int) -> None:
        from infra.wiring import build_app
        config = uvicorn.Config(build_app(settings), host=host, port=port, workers=1,
                                log_level="warning", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@app.command()
def serve(host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="Port")] = 8000) -> None:
    """Serve the API (embedded profile: one process owns the store)."""
    from infra.wiring import build_app
    settings = _settings()
    if settings.dev:
        _print_keys(settings)
    try:
        application = build_app(settings)
    except SettingsError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print(f"serving on http://{host}:{port}  (docs: http://{host}:{port}/docs)")
    from infra.logs import log_config
    uvicorn.run(application, host=host, port=port, workers=1, log_level="info",
                log_config=log_config(settings.log_format), timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS)


@app.command()
def worker(relay: Annotated[bool, typer.Option(
               help="Also run the relay of decisions and alerts to Kafka (one worker at a time publishes)")] = True,
           loglevel: Annotated[str, typer.Option(help="Log level")] = "INFO") -> None:
    """Run a Kafka worker of the distributed profile (REPLENISH_PROFILE=distributed): it stores
    the events of the partitions it is given, with their offsets; start as many as needed."""
    from infra.wiring_distributed import run_worker
    try:
        run_worker(Settings(), relay=relay, loglevel=loglevel)
    except SettingsError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command()
def snapshot(url: Annotated[str | None, typer.Option(
                 help="A running service: it writes the snapshot (POST /v1/admin/snapshot)")] = None,
             key: Annotated[str | None, typer.Option(envvar="REPLENISH_ADMIN_KEY",
                                                     help="An admin key for --url")] = None,
             ) -> None:
    """Write a snapshot of the write model: of the data directory (the service stopped), or
    inside a running service with --url and --key. The next start reads it and only the log
    after it (embedded profile)."""
    from infra.wiring import build_processor, snapshot_dir
    from streams import snapshots

    if url is not None:
        _snapshot_in_service(url, key)
        return

    settings = _settings()
    if settings.profile == "distributed":
        console.print("[red]error:[/red] snapshots are for the embedded profile's data directory")
        raise typer.Exit(2)
    existing_store(settings).close()  # (a clear error when there is no store)
    started = time.perf_counter()
    processor = build_processor(settings)
    read_s = time.perf_counter() - started
    source = f"snapshot {processor.restored_from.path.name} + log" if processor.restored_from else "the whole log"
    started = time.perf_counter()
    path = snapshots.write(snapshot_dir(settings), settings.case_id_key.get_secret_value().encode(),
                           processor.position, processor.position, processor.snapshot_state())
    console.print(f"state read from {source} in {read_s:.2f} s; snapshot at notification "
                  f"{processor.position:,} written to {path} ({path.stat().st_size / 1e6:.1f} MB) "
                  f"in {time.perf_counter() - started:.2f} s")
    processor.store.close()


@app.command("import")
def import_csv(
        kind: Annotated[str, typer.Argument(help="items, locations, suppliers or contracts")],
        file: Annotated[Path, typer.Argument(help="A CSV file whose columns are the event's fields")],
        partial: Annotated[bool, typer.Option(help="Store the good rows even when some are refused")] = False,
        url: Annotated[str | None, typer.Option(help="A running service to import through (POST /v1/events)")] = None,
        key: Annotated[str | None, typer.Option(envvar="REPLENISH_ADMIN_KEY", help="An admin key for --url")] = None,
) -> None:
    """Import master data from CSV (README, "CSV master data"): into a stopped data directory,
    or through a running service with --url and --key. Nothing is stored from a file with a
    refused row unless --partial; rows an earlier import stored are skipped. Exit 1 when a row
    is refused."""
    import csv
    from datetime import UTC, datetime

    from streams import csv_import
    try:
        rows = csv_import.parse(kind, file.read_text(encoding="utf-8"), file.name, datetime.now(UTC))
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if url is not None:
        import httpx
        if not key:
            console.print("[red]error:[/red] --key (an admin key; or REPLENISH_ADMIN_KEY) is needed with --url")
            raise typer.Exit(2)
        client = httpx.Client(base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {key}"}, timeout=120)

        def known(event_id: str) -> bool:
            r = client.get(f"/v1/events/{event_id}")
            return r.status_code == 200 and r.json().get("status") == "accepted"

        def submit(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            for k in range(0, len(events), 1000):
                r = client.post("/v1/events", json=events[k:k + 1000])
                if r.status_code != 200:
                    console.print(f"[red]error:[/red] the service answered {r.status_code}: {r.text[:500]}")
                    raise typer.Exit(1)
                out += r.json()["results"]
            return out

        with client:
            report = csv_import.run(kind, rows, partial, known, submit)
    else:
        from domain.intake import Principal
        from infra.wiring import build_processor
        settings = _settings()
        if settings.profile == "distributed":
            console.print("[red]error:[/red] on the distributed profile import through the API: --url and --key")
            raise typer.Exit(2)
        processor = build_processor(settings)
        importer = Principal("csv-import", "admin")

        def known_here(event_id: str) -> bool:
            outcome = processor.event_outcome(event_id)
            return outcome is not None and outcome.get("status") == "accepted"

        def submit_here(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [o.as_dict() for o in processor.process([(e, importer) for e in events]).outcomes] if events else []

        report = csv_import.run(kind, rows, partial, known_here, submit_here)
        processor.store.close()
    for row in report.refused:
        for e in row.errors:
            console.print(f"  line {row.line}: {e.get('field') or '-'}: {e.get('code')}: {e.get('message')}",
                          markup=False, highlight=False)
    verdict = ("nothing stored: a row is refused (--partial stores the good ones)" if report.stored_nothing
               else f"{report.stored} stored, {report.already} already there")
    console.print(f"{kind}: {len(report.rows)} rows, {len(report.refused)} refused; {verdict}")
    if report.refused:
        raise typer.Exit(1)


def _snapshot_in_service(url: str, key: str | None) -> None:
    import httpx

    if not key:
        console.print("[red]error:[/red] --key (an admin key; or REPLENISH_ADMIN_KEY) is needed with --url")
        raise typer.Exit(2)
    try:
        r = httpx.post(f"{url.rstrip('/')}/v1/admin/snapshot", headers={"Authorization": f"Bearer {key}"},
                       timeout=httpx.Timeout(30, read=None))
    except httpx.HTTPError as exc:
        console.print(f"[red]error:[/red] could not reach {url}: {exc}")
        raise typer.Exit(1) from None
    if r.status_code != 200:
        console.print(f"[red]error:[/red] the service answered {r.status_code}: {r.text[:500]}")
        raise typer.Exit(1)
    data = r.json()
    console.print(f"snapshot at notification {data['position']:,} written by the service to {data['file']} "
                  f"({data['bytes'] / 1e6:.1f} MB) in {data['seconds']:.2f} s")


@app.command()
def roles() -> None:
    """Print README's role table (who may call which route), read from the routes themselves."""
    import tempfile

    from api.access import roles_table
    from infra.wiring import build_app

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), api_keys=SecretStr("k:admin"),
                            case_id_key=SecretStr("not-a-secret"), dev=False).prepared()
        print(roles_table(build_app(settings)))


@app.command()
def topics() -> None:
    """Create the distributed profile's Kafka topics (idempotent) and list them."""
    from infra.wiring_distributed import make_topics
    try:
        counts = make_topics(Settings())
    except SettingsError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    for name, partitions in counts.items():
        console.print(f"{name}: {partitions} partition{'s' if partitions != 1 else ''}")


@app.command()
def demo(host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
         port: Annotated[int, typer.Option(help="Port")] = 8000,
         scans: Annotated[int, typer.Option(help="Usage scans to simulate")] = 400,
         stay: Annotated[bool, typer.Option(help="Keep the API up after the demo (Ctrl-C stops)")] = True,
         ) -> None:
    """Serve the API and feed it a small simulated ward, in development mode."""
    from infra.demo import run_demo
    settings = _settings(dev=True)
    _print_keys(settings)
    with BackgroundServer(settings, host, port):
        base = f"http://{host}:{port}"
        run_demo(base, settings.principals(), scans, console)
        if stay:
            console.print(f"\nThe API stays up at {base} (docs: {base}/docs). Ctrl-C stops it.")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass


def _weights(text: str | None) -> dict[str, float] | None:
    from infra.simulate import parse_weights
    try:
        return parse_weights(text)
    except ValueError as exc:
        console.print(f"[red]error:[/red] --weights: {exc}")
        raise typer.Exit(2) from None


@app.command()
def simulate(scenario: Annotated[str, typer.Option(help="steady, surge, supplier_disruption, recall, holiday, "
                                                    "bulk_daily, unit_poisson, lumpy, step, ramp or collapse")] = "steady",
             days: Annotated[int, typer.Option(help="Days to simulate (the first 90 are warm-up)")] = 365,
             seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same figures")] = 1,
             items: Annotated[int, typer.Option(help="Items in the synthetic hospital")] = 300,
             calibrate: Annotated[bool, typer.Option(
                 help="Tune each policy's safety factor to equal inventory, both ways")] = True,
             weights: Annotated[str | None, typer.Option(
                 help="Criticality weights of the headline, e.g. critical=10,high=3,normal=1")] = None,
             json_path: Annotated[Path | None, typer.Option("--json", help="Write the figures as JSON here")] = None,
             html_path: Annotated[Path | None, typer.Option("--html", help="Write an HTML report here")] = None,
             ) -> None:
    """Compare static par, fixed ROP, batch forecast, moving window and the dynamic policy (the
    real processor) on the same simulated demand: a model-only table and a full-system table,
    each policy also tuned to equal inventory."""
    from infra.simulate import run_simulate
    from streams.simulation.scenarios import SCENARIOS
    if scenario not in SCENARIOS:
        console.print(f"[red]error:[/red] unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
        raise typer.Exit(2)
    if days <= 90:
        console.print("[red]error:[/red] --days must be more than the 90 days of warm-up")
        raise typer.Exit(2)
    run_simulate(scenario, days, seed, items, calibrate, console, json_path, html_path, _weights(weights))


@app.command()
def backtest(history: Annotated[Path, typer.Option(help="CSV date,sku,location,quantity (daily consumption)")],
             items: Annotated[Path, typer.Option(
                 help="CSV sku,location,lead_time_days,pack_size,unit_cost,starting_stock,criticality")],
             calibrate: Annotated[bool, typer.Option(
                 help="Tune each policy's safety factor to equal inventory, both ways")] = True,
             weights: Annotated[str | None, typer.Option(
                 help="Criticality weights of the headline, e.g. critical=10,high=3,normal=1")] = None,
             json_path: Annotated[Path | None, typer.Option("--json", help="Write the figures as JSON here")] = None,
             html_path: Annotated[Path | None, typer.Option("--html", help="Write an HTML report here")] = None,
             ) -> None:
    """Compare the policies on a history exported from an ERP; bad rows are reported with their
    file and line number (exit 2)."""
    from infra.simulate import run_backtest
    from streams.simulation.backtest import CsvErrors
    try:
        run_backtest(history, items, calibrate, console, json_path, html_path, _weights(weights))
    except CsvErrors as exc:
        console.print(f"[red]error:[/red] {len(exc.errors)} bad row{'s' if len(exc.errors) != 1 else ''}:")
        for e in exc.errors:
            console.print(f"  {e}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    except OSError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def existing_store(settings: Settings) -> EventStore:
    """The event store the settings name; exit 2 when the embedded profile's file is not
    there (a command reading a store must not report on, nor create, an empty one)."""
    from infra.wiring import build_store, sqlite_path

    if settings.profile == "embedded" and not sqlite_path(settings).exists():
        console.print(f"[red]error:[/red] no event store at {sqlite_path(settings)} "
                      "(set REPLENISH_DATA_DIR to the service's data directory)")
        raise typer.Exit(2)
    return build_store(settings)


@audit_app.command("verify")
def audit_verify(
        checkpoint: Annotated[Path | None, typer.Option(
            help="Also check the store against the signed checkpoints in this file (one JSON a line, "
                 "held outside the store): each must still match")] = None,
        public_key: Annotated[Path | None, typer.Option(
            help="The signer's public key (PEM) to check the checkpoints' signatures; default: that of "
                 "REPLENISH_AUDIT_SIGNING_KEY")] = None,
) -> None:
    """Verify the hash chain of every stored stream, and with ``--checkpoint`` that the whole log
    still hashes to each checkpoint's root; exit 1 naming what is missing or changed."""
    from streams.processor import verify_store
    settings = Settings()
    store = existing_store(settings)
    checked, broken = verify_store(store)
    failed = broken is not None
    if broken is None:
        console.print(f"[green]ok[/green]: {checked} events checked, every chain is whole")
    else:
        console.print(f"[red]broken[/red] after {checked} events: stream {broken.stream!r} "
                      f"version {broken.version} (notification {broken.notification_id}): {broken.reason}")
    if checkpoint is not None:
        from streams import checkpoints
        public = None
        if public_key is not None:
            public = checkpoints.load_public_key(public_key.read_bytes())
        elif settings.audit_signing_key is not None:
            public = checkpoints.load_signing_key(settings.audit_signing_key).public_key()
        if public is None:
            console.print("[yellow]note[/yellow]: no public key given: the checkpoints' signatures are not checked")
        held = checkpoints.read_file(checkpoint)
        found = checkpoints.check_all(store, held, public)
        for cp, problems in zip(held, found, strict=True):
            for problem in problems:
                console.print(f"[red]checkpoint of {cp.tree_size} events ({cp.timestamp})[/red]: {problem}")
        if any(found):
            failed = True
        elif held:
            console.print(f"[green]ok[/green]: the log matches all {len(held)} checkpoints "
                          f"(the newest covers {held[-1].tree_size} events)")
    if failed:
        raise typer.Exit(1)


@audit_app.command("checkpoint")
def audit_checkpoint() -> None:
    """Make a signed checkpoint of the whole log of a stopped data directory (or of the
    distributed store) now: printed, and appended to REPLENISH_AUDIT_CHECKPOINT_FILE if set."""
    from streams import checkpoints
    settings = Settings()
    if settings.audit_signing_key is None:
        console.print("[red]error:[/red] REPLENISH_AUDIT_SIGNING_KEY is not set (a PEM file with an Ed25519 "
                      "private key; `replenish audit keygen --out FILE` makes one)")
        raise typer.Exit(2)
    cp = checkpoints.make(existing_store(settings), checkpoints.load_signing_key(settings.audit_signing_key))
    if settings.audit_checkpoint_file is not None:
        checkpoints.append_to_file(settings.audit_checkpoint_file, cp)
    sys.stdout.write(cp.as_json().decode() + "\n")


@audit_app.command("public-key")
def audit_public_key() -> None:
    """Print the public key (PEM) of REPLENISH_AUDIT_SIGNING_KEY, for whoever checks checkpoints."""
    from streams import checkpoints
    settings = Settings()
    if settings.audit_signing_key is None:
        console.print("[red]error:[/red] REPLENISH_AUDIT_SIGNING_KEY is not set")
        raise typer.Exit(2)
    key = checkpoints.load_signing_key(settings.audit_signing_key)
    sys.stdout.write(checkpoints.public_pem(key))
    typer.echo(f"key_id {checkpoints.key_id(key)}", err=True)


@audit_app.command("keygen")
def audit_keygen(out: Annotated[Path, typer.Option(help="Where to write the new private key (PEM, mode 600)")]) -> None:
    """Make an Ed25519 signing key for the audit log's checkpoints."""
    from streams import checkpoints
    if out.exists():
        console.print(f"[red]error:[/red] {out} exists; not overwritten")
        raise typer.Exit(2)
    key = checkpoints.new_signing_key(out)
    console.print(f"wrote {out} (key_id {checkpoints.key_id(key)}); set REPLENISH_AUDIT_SIGNING_KEY={out}")


@audit_app.command("export")
def audit_export(
        start: Annotated[str | None, typer.Option("--from", help="First instant of recording (ISO 8601 with offset, or a date: 00:00 UTC)")] = None,
        end: Annotated[str | None, typer.Option("--to", help="End of the period, exclusive (ISO 8601 with offset, or a date)")] = None,
        out: Annotated[str | None, typer.Option("--out", help="File to write (default: standard output)")] = None,
        checkpoint: Annotated[Path | None, typer.Option(
            help="Prove the export against the newest checkpoint in this file (held outside the "
                 "store) rather than one made now with REPLENISH_AUDIT_SIGNING_KEY")] = None,
) -> None:
    """Write the events recorded in a period as JSON Lines with their hashes (one stored event a
    line: notification_id, stream, version, topic, state), for an outside verifier (README,
    "Hashing rule"). With --out, a sidecar OUT.proofs.json beside it holds a signed checkpoint
    and each exported event's inclusion proof in its tree (README, "Signed checkpoints"): the
    newest of --checkpoint FILE when given, else one made now with REPLENISH_AUDIT_SIGNING_KEY."""
    from datetime import UTC, datetime

    from streams.traceability import export

    def instant(name: str, value: str | None) -> datetime | None:
        if value is None:
            return None
        try:
            t = datetime.fromisoformat(value)
        except ValueError:
            console.print(f"[red]error:[/red] --{name} {value!r} is not an ISO 8601 date or instant")
            raise typer.Exit(2) from None
        return t.replace(tzinfo=UTC) if t.tzinfo is None else t

    settings = Settings()
    store = existing_store(settings)
    t0, t1 = instant("from", start), instant("to", end)
    if out is None:
        n = export(store, sys.stdout.buffer, t0, t1)
        sys.stdout.buffer.flush()
    else:
        ids: list[int] = []
        with open(out, "wb") as f:
            n = export(store, f, t0, t1, ids)
        console.print(f"{n} events written to {out}")
        _export_sidecar(settings, store, Path(f"{out}.proofs.json"), ids, checkpoint)


def _export_sidecar(settings: Settings, store: Any, path: Path, ids: list[int], held: Path | None) -> None:
    """The export's sidecar (``streams.checkpoints.sidecar``), or a line saying why none."""
    import orjson

    from streams import checkpoints

    public = None
    if held is not None:
        found = checkpoints.read_file(held)
        if not found:
            console.print(f"[red]error:[/red] {held} holds no checkpoint")
            raise typer.Exit(2)
        cp = found[-1]
    elif settings.audit_signing_key is not None:
        key = checkpoints.load_signing_key(settings.audit_signing_key)
        cp, public = checkpoints.make(store, key), key.public_key()
    else:
        console.print("no proofs written: set REPLENISH_AUDIT_SIGNING_KEY (a checkpoint made now) or "
                      "pass --checkpoint FILE (the newest held there)")
        return
    try:
        body = checkpoints.sidecar(store, cp, ids, public)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    path.write_bytes(orjson.dumps(body))
    console.print(f"proofs of {len(body['proofs'])} events against checkpoint {cp.tree_size} "
                  f"({cp.key_id}) written to {path}"
                  + (f"; {len(body['not_covered'])} recorded after it have none" if body["not_covered"] else ""))


@app.command()
def replay(url: Annotated[str | None, typer.Option(help="A running service to compare with")] = None,
           key: Annotated[str | None, typer.Option(envvar="REPLENISH_AUDIT_KEY",
                                                   help="An auditor or admin key for --url "
                                                        "(an admin key with --projections)")] = None,
           projections: Annotated[bool, typer.Option(
               "--projections", help="Drop and rebuild every projection table (ClickHouse) from the "
                                     "store: inside the running service with --url and --key, else "
                                     "directly (the service must be stopped)")] = False,
           ) -> None:
    """Rebuild derived state from the store and report whether it equals the live state."""
    import httpx

    if projections:
        _replay_projections(url, key)
        return

    from infra.wiring import build_processor
    settings = _settings()
    started = time.perf_counter()
    processor = build_processor(settings)  # rebuilds from the notification log
    rebuilt = processor.state_digest()
    events = processor.store.recorder.max_notification_id() or 0
    elapsed = time.perf_counter() - started
    console.print(f"rebuilt from {events} stored events in {elapsed:.2f} s; digest {rebuilt[:16]}")
    if url:
        live = httpx.get(f"{url}/v1/audit/state-digest", headers={"Authorization": f"Bearer {key}"},
                         timeout=60).raise_for_status().json()["digest"]
    else:
        # No service to ask: the live state is the model kept while processing, which a second,
        # independent replay (stream by stream through the repository) must reproduce.
        from domain.intake import Ledger
        ledger = Ledger()
        for stream_id in sorted(processor.ledger.streams):
            for event in processor.store.stream(stream_id):
                ledger.replay(event)
        from streams.processor import ledger_digest
        live = ledger_digest(ledger)
    if live == rebuilt:
        console.print("[green]equal[/green]: the rebuilt state equals the live state")
    else:
        console.print(f"[red]different[/red]: live digest {live[:16]} != rebuilt {rebuilt[:16]}")
        raise typer.Exit(1)


def _replay_projections(url: str | None, key: str | None) -> None:
    """``replay --projections``: rebuild the ClickHouse tables with a progress bar, then report
    rows per second."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("rebuilding the projections"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("events  {task.fields[rate]}"), TimeElapsedColumn(), console=console)
    report = _rebuild_in_service(url, key, bar) if url else _rebuild_here(bar)
    events, rows, seconds = report["events"], report["rows"], report["seconds"]
    console.print(f"[green]rebuilt[/green] the projections from {events:,} stored events: {rows:,} rows "
                  f"in {seconds:.2f} s = {events / seconds if seconds else 0:,.0f} events/s, "
                  f"{rows / seconds if seconds else 0:,.0f} rows/s")


def _rebuild_in_service(url: str, key: str | None, bar: Any) -> dict[str, Any]:
    import httpx
    import orjson

    if not key:
        console.print("[red]error:[/red] --key (an admin key; or REPLENISH_AUDIT_KEY) is needed with --url")
        raise typer.Exit(2)
    report: dict[str, Any] | None = None
    with httpx.stream("POST", f"{url.rstrip('/')}/v1/admin/projections/rebuild",
                      headers={"Authorization": f"Bearer {key}"}, timeout=httpx.Timeout(30, read=None)) as r:
        if r.status_code != 200:
            r.read()
            console.print(f"[red]error:[/red] the service answered {r.status_code}: {r.text[:500]}")
            raise typer.Exit(1)
        with bar:
            task = bar.add_task("rebuild", total=None, rate="")
            for line in r.iter_lines():
                if not line.strip():
                    continue
                data = orjson.loads(line)
                if "error" in data:
                    console.print(f"[red]error:[/red] the rebuild failed: {data['error']}")
                    raise typer.Exit(1)
                rate = data["events"] / data["seconds"] if data.get("seconds") else 0
                bar.update(task, completed=data["events"], total=data.get("total") or None,
                           rate=f"{rate:,.0f}/s")
                if data.get("done"):
                    report = data
    if report is None:
        console.print("[red]error:[/red] the service ended the rebuild without a report")
        raise typer.Exit(1)
    return report


def _rebuild_here(bar: Any) -> dict[str, Any]:
    from clickhouse_connect.driver.exceptions import Error as ClickHouseError

    from projections.client import connect, is_embedded, open_projections
    from projections.follower import rebuild
    settings = Settings()
    store = existing_store(settings)
    total = store.recorder.max_notification_id() or 0
    dsn, database = settings.projections_dsn(), settings.clickhouse_database
    try:
        client = open_projections(dsn, database)
    except ClickHouseError as exc:
        if not is_embedded(dsn):
            raise
        # chDB lets one process at a time open a data directory: the running service has it.
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        console.print(f"[red]error:[/red] could not open the projection engine at {dsn} (is the service "
                      f"running? then rebuild inside it: replenish replay --projections --url URL --key "
                      f"ADMIN_KEY): {first}")
        raise typer.Exit(2) from None
    helper = connect(dsn, database, create=False)
    try:
        with bar:
            task = bar.add_task("rebuild", total=total or None, rate="")
            report = rebuild(client, store.notifications, helpers=[helper], on_batch=lambda p: bar.update(
                task, completed=p.events, rate=f"{p.events_per_second:,.0f}/s"))
            bar.update(task, completed=report.events)
    finally:
        helper.close()
        client.close()
    return {"events": report.events, "rows": report.rows, "seconds": report.seconds}


def main() -> None:
    try:
        app()
    except SettingsError as exc:
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()

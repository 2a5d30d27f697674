"""The ``replenish`` command line."""

from __future__ import annotations

import sys
import threading
import time
from typing import Annotated

import typer
import uvicorn
from rich.console import Console
from rich.table import Table

from infra.settings import Settings, SettingsError

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
    uvicorn.run(application, host=host, port=port, workers=1, log_level="info",
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS)


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


@audit_app.command("verify")
def audit_verify() -> None:
    """Verify the hash chain of every stored stream; exit 1 naming the first broken link."""
    from infra.wiring import build_store, sqlite_path
    from streams.processor import verify_store
    settings = Settings()
    if settings.profile == "embedded" and not sqlite_path(settings).exists():
        # Verifying a store that is not there must not report "ok" (nor create an empty one).
        console.print(f"[red]error:[/red] no event store at {sqlite_path(settings)} "
                      "(set REPLENISH_DATA_DIR to the service's data directory)")
        raise typer.Exit(2)
    checked, broken = verify_store(build_store(settings))
    if broken is None:
        console.print(f"[green]ok[/green]: {checked} events checked, every chain is whole")
        return
    console.print(f"[red]broken[/red] after {checked} events: stream {broken.stream!r} "
                  f"version {broken.version} (notification {broken.notification_id}): {broken.reason}")
    raise typer.Exit(1)


@app.command()
def replay(url: Annotated[str | None, typer.Option(help="A running service to compare with")] = None,
           key: Annotated[str | None, typer.Option(envvar="REPLENISH_AUDIT_KEY",
                                                   help="An auditor or admin key for --url")] = None,
           ) -> None:
    """Rebuild derived state from the store and report whether it equals the live state."""
    import httpx

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


def main() -> None:
    try:
        app()
    except SettingsError as exc:
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()

"""Where ingest time goes: cProfile of the hot path, on the benchmark's workload.

    .venv/bin/python -m bench.profile_ingest                # Processor.process, batches of 1,000
    .venv/bin/python -m bench.profile_ingest --http         # the API in-process: event loop and
                                                            # processor thread, each profiled
    .venv/bin/python -m bench.profile_ingest --http --batch 1 --events 3000

With ``--http`` the service runs in this process (uvicorn, one worker, as ``replenish serve``)
and a client subprocess posts to it, so the client's own work is not in the profile. Profiling
slows Python code several times over: read the shares, not the absolute times.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.ingest import ADMIN, ADMIN_KEY, SCANNER
from bench.workload import Workload


def report(profile: cProfile.Profile, title: str, top: int) -> None:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.strip_dirs()
    for key in ("tottime", "cumulative"):
        stats.sort_stats(key).print_stats(top)
    print(f"\n===== {title} =====")
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip()))


def profile_processor(events: int, batch: int, top: int) -> None:
    from bench.ingest import serve_settings
    from infra.wiring import build_processor
    from streams.processor import tune_collector

    processor = build_processor(serve_settings(Path(tempfile.mkdtemp(prefix="replenish-profile-"))))
    tune_collector()
    wl = Workload("prof", items=3, locations=4)
    processor.process([(e, ADMIN) for e in wl.master_data(datetime.now(UTC))])
    items = [(e, SCANNER) for _, e in wl.events(events)]
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    for i in range(0, events, batch):
        processor.process(items[i:i + batch])
    profile.disable()
    elapsed = time.perf_counter() - started
    report(profile, f"Processor.process: {events} events in batches of {batch}, "
                    f"{elapsed:.1f} s under the profiler", top)


def profile_http(events: int, batch: int, top: int) -> None:
    import uvicorn

    from bench.ingest import free_port, serve_settings
    from infra.wiring import build_app

    tmp = Path(tempfile.mkdtemp(prefix="replenish-profile-"))
    settings = serve_settings(tmp / "data")
    app = build_app(settings)
    runner = app.state.runner
    worker_profile = cProfile.Profile()
    process = runner.processor.process

    def profiled_process(items):  # type: ignore[no-untyped-def]
        worker_profile.enable()  # runs on the processor thread: profiles that thread
        try:
            return process(items)
        finally:
            worker_profile.disable()

    runner.processor.process = profiled_process
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    client = subprocess.Popen([sys.executable, "-m", "bench.profile_ingest", "--client", str(port),
                               str(settings.data_dir), "--events", str(events), "--batch", str(batch)])

    def stop_when_client_exits() -> None:
        client.wait()
        server.should_exit = True

    threading.Thread(target=stop_when_client_exits, daemon=True).start()
    loop_profile = cProfile.Profile()
    loop_profile.enable()
    server.run()
    loop_profile.disable()
    report(loop_profile, f"HTTP: event loop thread (uvicorn, FastAPI, the route), batches of {batch}", top)
    report(worker_profile, f"HTTP: processor thread, batches of {batch} (merged when concurrent)", top)


def run_client(port: int, data_dir: str, events: int, batch: int) -> None:
    import httpx

    from bench.ingest import http_phase

    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)

    class Svc:  # what http_phase needs of a service
        pass

    svc = Svc()
    svc.port, svc.db, svc.base = port, Path(data_dir) / "events.sqlite", base  # type: ignore[attr-defined]
    wl = Workload("prof-http", items=3, locations=4)
    httpx.post(f"{base}/v1/events", json=wl.master_data(datetime.now(UTC)),
               headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60).raise_for_status()
    phase = http_phase(svc, wl, events, batch, 8)  # type: ignore[arg-type]
    print(f"client: {phase.accepted} accepted, {phase.rate:,.0f}/s under the profiler")


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.profile_ingest", description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--top", type=int, default=30, help="rows per listing")
    ap.add_argument("--http", action="store_true", help="profile the API path instead")
    ap.add_argument("--client", nargs=2, metavar=("PORT", "DATA_DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        run_client(int(args.client[0]), args.client[1], args.events, args.batch)
    elif args.http:
        profile_http(args.events, args.batch, args.top)
    else:
        profile_processor(args.events, args.batch, args.top)


if __name__ == "__main__":
    main()

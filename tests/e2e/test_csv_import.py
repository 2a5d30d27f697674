"""CSV master data for go-live (issue 17, item 4): ``replenish import`` into a stopped data
directory and through a running service; a re-import stores nothing twice; a file with a
refused row stores nothing (each refused row named by its line) unless ``--partial``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from .support import KEYS, Service, now, post_events, receipt, run_cli, statuses

pytestmark = pytest.mark.e2e

SUPPLIERS = "supplier,name\nMEDSUP,Medical Supplies Ltd\nACME,Acme Surgical\n"
LOCATIONS = ("location,site,timezone,kind\nCS,H1,Europe/Paris,central_store\n"
             "W3,H1,Europe/Paris,ward\n")
ITEMS = ("sku,description,base_unit,units,gtins,criticality,lead_time_days,supplier,divisible,effective_from\n"
         'GLV-M,"Nitrile gloves, M",each,"{""box"": 10}",{},high,3,MEDSUP,false,2026-01-01\n'
         "00123,Suture 3-0,each,,,normal,5,ACME,,2026-01-01\n")


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def test_import_into_a_stopped_data_directory_then_again_then_a_bad_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for kind, name, text in (("suppliers", "suppliers.csv", SUPPLIERS), ("locations", "locations.csv", LOCATIONS),
                             ("items", "items.csv", ITEMS)):
        done = run_cli("import", kind, str(write(tmp_path, name, text)), data_dir=data)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "0 refused" in done.stdout and "stored, 0 already" in done.stdout, done.stdout
    again = run_cli("import", "items", str(tmp_path / "items.csv"), data_dir=data)
    assert again.returncode == 0 and "0 stored, 2 already there" in again.stdout, again.stdout

    bad = write(tmp_path, "more-items.csv", "sku,base_unit,lead_time_days,criticality\n"
                                            "GOWN-L,each,4,high\nMASK,each,soon,high\nCAP,each,2,urgent\n")
    refused = run_cli("import", "items", str(bad), data_dir=data)
    out = refused.stdout + refused.stderr
    assert refused.returncode == 1, out
    assert "line 3: lead_time_days" in out and "line 4: criticality" in out and "nothing stored" in out, out
    partial = run_cli("import", "items", str(bad), "--partial", data_dir=data)
    assert partial.returncode == 1 and "1 stored" in partial.stdout, partial.stdout

    service = Service(data).start()  # the imported master data are in force
    try:
        t = now()
        with service.client("scanner") as scanner, service.client("auditor") as auditor:
            exp = (t + timedelta(days=300)).date().isoformat()
            assert statuses(post_events(scanner, [receipt("imp-r1", t - timedelta(minutes=5), 20, "L1", exp)])) == \
                ["accepted"]
            assert statuses(post_events(scanner, [{**receipt("imp-r2", t - timedelta(minutes=5), 1.5, "L1", exp)}])) == \
                ["rejected"]  # gloves are counted in whole pieces (divisible false)
            r = auditor.get("/v1/audit/streams/item:00123")
            assert r.status_code == 200 and '"00123"' in r.text  # the SKU kept its zeros
    finally:
        service.stop()


def test_import_through_a_running_service(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    service = Service(data).start()
    try:
        for kind, name, text in (("suppliers", "s.csv", SUPPLIERS), ("locations", "l.csv", LOCATIONS),
                                 ("items", "i.csv", ITEMS)):
            done = run_cli("import", kind, str(write(tmp_path, name, text)), "--url", service.base,
                           "--key", KEYS["admin"], data_dir=tmp_path)
            assert done.returncode == 0, done.stdout + done.stderr
        again = run_cli("import", "items", str(tmp_path / "i.csv"), "--url", service.base, "--key", KEYS["admin"],
                        data_dir=tmp_path)
        assert "0 stored, 2 already there" in again.stdout, again.stdout
        with service.client("admin") as admin:  # the route takes the same file: the same ids
            r = admin.post("/v1/import/items?name=i.csv", content=ITEMS.encode(), headers={"Content-Type": "text/csv"})
            assert r.status_code == 200 and r.json()["already"] == 2 and r.json()["stored"] == 0, r.text
            bad = "sku,base_unit,criticality\nGOWN,each,high\nCAP,each,urgent\n"
            r = admin.post("/v1/import/items?name=b.csv", content=bad.encode(), headers={"Content-Type": "text/csv"})
            body = r.json()
            assert body["stored_nothing"] and [x["line"] for x in body["refused"]] == [3], body
            r = admin.post("/v1/import/items?name=b.csv&partial=true", content=bad.encode(),
                           headers={"Content-Type": "text/csv"})
            assert r.json()["stored"] == 1, r.text
            huge = "sku,base_unit,description\nG,each," + "x" * 200_000 + "\n"
            r = admin.post("/v1/import/items", content=huge.encode(), headers={"Content-Type": "text/csv"})
            assert r.status_code == 422 and r.json()["code"] == "malformed_body", r.text
    finally:
        service.stop()

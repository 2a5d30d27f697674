"""FHIR R4 REST (issue 17, item 2): resources an OR system, an EHR or a supplier's system
already sends, mapped to our events with the same validation, refusal codes, de-duplication
and roles; refusals answered as ``OperationOutcome`` with our codes.

- ``SupplyDelivery`` (status ``completed``) → ``receipt``: the item from
  ``suppliedItem.itemCodeableConcept`` or the ``Device`` it references (contained ``#id``, or an
  entry of the same Bundle), lot, expiry and serial from that Device (``lotNumber``,
  ``expirationDate``, ``serialNumber``; its UDI carrier's device identifier as the GTIN), the
  quantity ``suppliedItem.quantity.value`` (default 1), the location ``destination``
  (``Location/{our id}``), the time ``occurrence[x]``; ``basedOn: SupplyRequest/{id}`` names one
  of our requisitions, whose purchase order the receipt is against.
- ``Procedure`` (``completed`` or ``in-progress``) → one ``usage`` per device: each
  ``focalDevice.manipulated`` (but those ``removed`` or ``explanted``), ``usedReference`` and
  ``usedCode``, one unit each, at ``Procedure.location``, at ``performed[x]``; the case id
  from ``Procedure.identifier``'s value (as HL7 gives it; else the ``encounter`` reference),
  pseudonymised as any case id.
- ``DeviceUseStatement`` (``active`` or ``completed``) → ``usage`` of its ``device`` at
  ``timing[x]`` (else ``recordedOn``), at the location the extension ``LOCATION_EXTENSION``
  names (the resource has no location of its own).
- ``Appointment`` → the OR schedule: ``booked``, ``pending``, ``proposed``, ``arrived``,
  ``checked-in``, ``fulfilled`` → ``surgery_scheduled`` (the case from ``identifier``, else the
  id; the procedure from ``serviceType``, else ``appointmentType`` (never ``reasonCode``: a
  diagnosis is the patient's); the
  location the ``Location/`` participant; the time ``start``); ``cancelled``, ``noshow``,
  ``entered-in-error`` → ``surgery_cancelled``. The booking's own time is ``meta.lastUpdated``
  (else ``created``): send one, so that a resend is a duplicate.

Items are named by GTIN (system ``GTIN_SYSTEM``) or by our SKU (``SKU_SYSTEM``), in a
``CodeableConcept.coding`` or a Device's UDI carrier or identifier; a code of another system is
refused (``unknown_item``) with the systems we read. Patient references, performers and free
text are dropped here; nothing of a resource but its mapped fields is stored.

Event ids come from the resource (its first identifier, else its id, else its content) and
the line, so a resource sent twice gives duplicates. Resources are read with
``fhir.resources``' R4B models (which match R4 for these resources).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class

GTIN_SYSTEM = "https://www.gs1.org/gtin"
SKU_SYSTEM = "urn:replenish:sku"
REFUSAL_SYSTEM = "urn:replenish:refusal"  # OperationOutcome.issue.details.coding: our codes
LOCATION_EXTENSION = "urn:replenish:location"  # valueReference Location/{id} (DeviceUseStatement)
SUPPORTED = ("SupplyDelivery", "Procedure", "DeviceUseStatement", "Appointment")
MAX_ENTRIES = 10_000
USED = ("completed", "in-progress")
SCHEDULED = ("booked", "pending", "proposed", "arrived", "checked-in", "fulfilled", "waitlist")
CANCELLED = {"cancelled": "cancelled", "noshow": "no_show", "entered-in-error": "entered in error"}
NOT_USED_ACTIONS = ("removed", "explanted")


@dataclass
class Problem:
    """Why (part of) a resource cannot become an event: where (a FHIRPath), our code, why."""

    where: str
    code: str
    message: str


@dataclass
class Mapped:
    resource_type: str
    events: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def validate(resource: Any) -> str | None:
    """None when ``resource`` is a FHIR R4 resource of a type we take; else why not."""
    if not isinstance(resource, dict):
        return "the body is not a FHIR resource (a JSON object)"
    kind = resource.get("resourceType")
    if not isinstance(kind, str):
        return "the resource has no resourceType"
    try:
        model = get_fhir_model_class(kind)
    except (KeyError, ValueError):
        return f"unknown resourceType {kind!r}"
    try:
        model.model_validate(resource)
    except Exception as exc:  # pydantic's ValidationError, or a model that cannot be built
        lines = [line for line in str(exc).splitlines() if line.strip()][:6]
        return f"not a valid FHIR R4 {kind}: " + " / ".join(lines)[:1000]
    return None


def _key(resource: dict[str, Any]) -> str:
    ids = resource.get("identifier")
    first = ids[0] if isinstance(ids, list) and ids else ids if isinstance(ids, dict) else None
    if isinstance(first, dict) and first.get("value"):
        basis = f"id|{first.get('system') or ''}|{first['value']}"
    elif resource.get("id"):
        basis = f"rid|{resource['id']}"
    else:
        basis = "body|" + orjson.dumps(resource, option=orjson.OPT_SORT_KEYS).decode()
    return hashlib.sha256(f"{resource.get('resourceType')}|{basis}".encode()).hexdigest()[:24]


def _event_id(resource: dict[str, Any], k: int) -> str:
    return f"fhir-{resource.get('resourceType', 'x')[:20]}-{_key(resource)}-{k}"


def _instant(value: Any) -> str | None:
    """A FHIR dateTime or date as an instant (a date alone: its start, UTC)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC).isoformat()
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()


def _location(ref: Any) -> str | None:
    """Our location id from a ``Location/{id}`` reference."""
    if isinstance(ref, dict) and isinstance(ref.get("reference"), str) and ref["reference"].startswith("Location/"):
        return ref["reference"].split("/", 1)[1] or None
    return None


def _item(concept: Any) -> dict[str, str] | None:
    """``{"gtin": …}`` or ``{"sku": …}`` from a CodeableConcept's codings of our systems."""
    for coding in (concept or {}).get("coding") or []:
        if not isinstance(coding, dict) or not coding.get("code"):
            continue
        if coding.get("system") == GTIN_SYSTEM:
            return {"gtin": str(coding["code"]).zfill(14) if len(str(coding["code"])) in (8, 12, 13)
                    else str(coding["code"])}
        if coding.get("system") == SKU_SYSTEM:
            return {"sku": str(coding["code"])}
    return None


def _codes(concept: Any) -> str:
    got = [f"{c.get('system') or '(no system)'}|{c.get('code')}" for c in (concept or {}).get("coding") or []
           if isinstance(c, dict)]
    return ", ".join(got) or (concept or {}).get("text") or "(no coding)"


def _device_item(device: dict[str, Any]) -> dict[str, Any] | None:
    """Item, lot, expiry and serial of a Device."""
    found: dict[str, Any] = {}
    for carrier in device.get("udiCarrier") or []:
        di = str(carrier.get("deviceIdentifier") or "")
        if di.isdigit():
            found["gtin"] = di.zfill(14) if len(di) in (8, 12, 13) else di
            break
    for ident in device.get("identifier") or []:
        if ident.get("system") == SKU_SYSTEM and ident.get("value"):
            found = {"sku": str(ident["value"])}
            break
    if not found:
        typed = _item(device.get("type"))
        if typed is None:
            return None
        found = typed
    if device.get("lotNumber"):
        found["lot"] = str(device["lotNumber"])
    if device.get("serialNumber"):
        found["serial"] = str(device["serialNumber"])
    expiry = device.get("expirationDate")
    if isinstance(expiry, str) and len(expiry) >= 10:
        found["expiry"] = expiry[:10]
    return found


Resolve = Callable[[str], dict[str, Any] | None]


def _devices(resource: dict[str, Any], others: Resolve) -> Resolve:
    """Find a referenced Device: contained (``#id``), else in the same Bundle (``others``)."""
    contained = {f"#{r.get('id')}": r for r in resource.get("contained") or [] if isinstance(r, dict)}

    def find(ref: str) -> dict[str, Any] | None:
        found = contained.get(ref) or others(ref)
        return found if isinstance(found, dict) and found.get("resourceType") == "Device" else None
    return find


def _device_line(ref: Any, where: str, find: Resolve, problems: list[Problem]) -> dict[str, Any] | None:
    reference = ref.get("reference") if isinstance(ref, dict) else None
    if not reference:
        problems.append(Problem(where, "unknown_item", "names a device by its display text only: send a "
                                "reference to a Device (contained, or in the same Bundle)"))
        return None
    device = find(reference)
    if device is None:
        problems.append(Problem(where, "unknown_item", f"the device {reference} is not in the request: send it "
                                "contained (#id) or as an entry of the same Bundle"))
        return None
    item = _device_item(device)
    if item is None:
        problems.append(Problem(where, "unknown_item", f"the device {reference} names no item we read: a UDI "
                                f"carrier's deviceIdentifier (GTIN), an identifier of {SKU_SYSTEM} or a type "
                                f"coded in {GTIN_SYSTEM} or {SKU_SYSTEM}"))
    return item


def _supply_delivery(r: dict[str, Any], find: Resolve, po_of: Callable[[str], str | None], out: Mapped) -> None:
    if r.get("status") != "completed":
        out.problems.append(Problem("SupplyDelivery.status", "malformed",
                                    f"a delivery {r.get('status') or 'without a status'} moves no stock: "
                                    "send it when completed"))
        return
    supplied = r.get("suppliedItem") or {}
    if not supplied:
        out.problems.append(Problem("SupplyDelivery.suppliedItem", "missing_field", "names nothing delivered"))
        return
    if supplied.get("itemReference"):
        item = _device_line(supplied["itemReference"], "SupplyDelivery.suppliedItem.itemReference", find,
                            out.problems)
    else:
        item = _item(supplied.get("itemCodeableConcept"))
        if item is None:
            out.problems.append(Problem("SupplyDelivery.suppliedItem.itemCodeableConcept", "unknown_item",
                                        f"item {_codes(supplied.get('itemCodeableConcept'))}: code it in "
                                        f"{GTIN_SYSTEM} (a GTIN) or {SKU_SYSTEM} (our SKU)"))
    location = _location(r.get("destination"))
    if location is None:
        out.problems.append(Problem("SupplyDelivery.destination", "unknown_location",
                                    "names no location: a reference Location/{our location id}"))
    at = _instant(r.get("occurrenceDateTime")) or _instant((r.get("occurrencePeriod") or {}).get("end")) \
        or _instant((r.get("occurrencePeriod") or {}).get("start"))
    if at is None:
        out.problems.append(Problem("SupplyDelivery.occurrence", "missing_field", "says not when it was delivered"))
    if item is None or location is None or at is None:
        return
    quantity = (supplied.get("quantity") or {})
    event: dict[str, Any] = {"event_id": _event_id(r, 0), "type": "receipt", "occurred_at": at,
                             "location": location, "quantity": quantity.get("value", 1), **item}
    if quantity.get("code") or quantity.get("unit"):
        event["unit"] = str(quantity.get("code") or quantity.get("unit"))
    for based in r.get("basedOn") or []:
        ref = str((based or {}).get("reference") or "")
        if ref.startswith("SupplyRequest/") and (po := po_of(ref.split("/", 1)[1])):
            event["po_id"] = po
    out.events.append(event)


def _case_id(r: dict[str, Any]) -> str | None:
    """The case: the first identifier's value (as HL7's SCH-1 and FT1-2 give it, so that a case
    booked over one and used over the other is one case), else the encounter reference."""
    for ident in r.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("value"):
            return str(ident["value"])
    encounter = (r.get("encounter") or {}).get("reference")
    return str(encounter) if encounter else None


def _procedure(r: dict[str, Any], find: Resolve, out: Mapped) -> None:
    if r.get("status") not in USED:
        out.problems.append(Problem("Procedure.status", "malformed",
                                    f"a procedure {r.get('status')!r} used nothing yet: send it completed "
                                    "(or in progress)"))
        return
    location = _location(r.get("location"))
    period = r.get("performedPeriod") or {}
    at = _instant(r.get("performedDateTime")) or _instant(period.get("end")) or _instant(period.get("start"))
    lines: list[tuple[str, dict[str, Any] | None]] = []
    for i, focal in enumerate(r.get("focalDevice") or []):
        action = {c.get("code") for c in ((focal or {}).get("action") or {}).get("coding") or []}
        if action & set(NOT_USED_ACTIONS):
            continue
        where = f"Procedure.focalDevice[{i}].manipulated"
        lines.append((where, _device_line(focal.get("manipulated"), where, find, out.problems)))
    for i, ref in enumerate(r.get("usedReference") or []):
        where = f"Procedure.usedReference[{i}]"
        lines.append((where, _device_line(ref, where, find, out.problems)))
    for i, concept in enumerate(r.get("usedCode") or []):
        item = _item(concept)
        if item is None:
            out.problems.append(Problem(f"Procedure.usedCode[{i}]", "unknown_item",
                                        f"item {_codes(concept)}: code it in {GTIN_SYSTEM} or {SKU_SYSTEM}"))
        lines.append((f"Procedure.usedCode[{i}]", item))
    if not lines:
        out.problems.append(Problem("Procedure", "missing_field", "names no device used (focalDevice, "
                                    "usedReference or usedCode): nothing to count"))
    if location is None:
        out.problems.append(Problem("Procedure.location", "unknown_location",
                                    "names no location: a reference Location/{our location id}"))
    if at is None:
        out.problems.append(Problem("Procedure.performed", "missing_field", "says not when it was performed"))
    if out.problems:
        return
    case = _case_id(r)
    seen: dict[str, int] = {}
    for where, item in lines:
        assert item is not None
        # Each line's id from what it names (the device or the item, and how many of it came
        # before), not its place in the lists: the same procedure sent again with a device
        # added keeps the ids of what it had.
        ident = orjson.dumps({k: item.get(k) for k in ("sku", "gtin", "lot", "serial")},
                             option=orjson.OPT_SORT_KEYS).decode() + where.split("[")[0]
        n = seen[ident] = seen.get(ident, -1) + 1
        line_key = hashlib.sha256(f"{ident}#{n}".encode()).hexdigest()[:12]
        event = {"event_id": f"{_event_id(r, 0)[:-2]}-{line_key}", "type": "usage", "occurred_at": at,
                 "location": location, "quantity": 1, **item}
        if case:
            event["case_id"] = case
        out.events.append(event)


def _device_use(r: dict[str, Any], find: Resolve, out: Mapped) -> None:
    if r.get("status") not in ("active", "completed"):
        out.problems.append(Problem("DeviceUseStatement.status", "malformed",
                                    f"a statement {r.get('status')!r} records no use"))
        return
    item = _device_line(r.get("device"), "DeviceUseStatement.device", find, out.problems)
    period = r.get("timingPeriod") or {}
    at = _instant(r.get("timingDateTime")) or _instant(period.get("end")) or _instant(period.get("start")) \
        or _instant(r.get("recordedOn"))
    location = next((_location(x.get("valueReference")) for x in r.get("extension") or []
                     if isinstance(x, dict) and x.get("url") == LOCATION_EXTENSION), None)
    if location is None:
        out.problems.append(Problem("DeviceUseStatement", "unknown_location",
                                    f"names no location: add the extension {LOCATION_EXTENSION} with a "
                                    "valueReference Location/{our location id}"))
    if at is None:
        out.problems.append(Problem("DeviceUseStatement.timing", "missing_field",
                                    "says not when the device was used (timing[x] or recordedOn)"))
    if item is None or location is None or at is None:
        return
    out.events.append({"event_id": _event_id(r, 0), "type": "usage", "occurred_at": at, "location": location,
                       "quantity": 1, **item})


def _appointment(r: dict[str, Any], out: Mapped) -> None:
    status = r.get("status")
    case = _case_id(r) or (f"Appointment/{r['id']}" if r.get("id") else None)
    if case is None:
        out.problems.append(Problem("Appointment.identifier", "missing_field", "names no case (identifier or id)"))
        return
    # When the booking changed: ``created`` (else ``meta.lastUpdated``); without either, now,
    # and then a resend is stored again (a repeated schedule event of a case changes nothing).
    meta = r.get("meta") or {}
    known = _instant(meta.get("lastUpdated")) or _instant(r.get("created"))
    booked_at = known or datetime.now(UTC).isoformat()
    # The id names the version of the booking (its last update, version, status and start), so
    # that booked, cancelled and booked again are three events, and a resend of any a duplicate.
    tail = "-" + hashlib.sha256(f"{booked_at}|{meta.get('versionId') or ''}|{status}|{r.get('start')}".encode()
                                ).hexdigest()[:10]
    if status in CANCELLED:
        out.events.append({"event_id": _event_id(r, 0) + tail, "type": "surgery_cancelled",
                           "occurred_at": booked_at, "case_id": case, "reason": CANCELLED[status]})
        return
    if status not in SCHEDULED:
        out.problems.append(Problem("Appointment.status", "malformed", f"an appointment {status!r} is not scheduled"))
        return
    procedure = None
    # (not reasonCode: a diagnosis is the patient's, and never reaches an event)
    for concept in [*(r.get("serviceType") or []), r.get("appointmentType")]:
        codings = [c for c in (concept or {}).get("coding") or [] if isinstance(c, dict) and c.get("code")]
        if codings:
            procedure = str(codings[0]["code"])
            break
    location = next((loc for p in r.get("participant") or [] if (loc := _location((p or {}).get("actor")))), None)
    at = _instant(r.get("start"))
    if procedure is None:
        out.problems.append(Problem("Appointment.serviceType", "missing_field", "names no procedure (serviceType "
                                    "or appointmentType coded)"))
    if location is None:
        out.problems.append(Problem("Appointment.participant", "unknown_location",
                                    "has no participant Location/{our location id}"))
    if at is None:
        out.problems.append(Problem("Appointment.start", "missing_field", "has no start"))
    if out.problems:
        return
    # (the start is part of the id: a rescheduled appointment is a new schedule event of the case)
    out.events.append({"event_id": _event_id(r, 0) + tail,
                       "type": "surgery_scheduled", "occurred_at": booked_at,
                       "case_id": case, "procedure": procedure, "location": location, "scheduled_for": at})


def map_resource(resource: dict[str, Any], others: Resolve | None = None,
                 po_of: Callable[[str], str | None] | None = None) -> Mapped:
    """Our events for one resource of ``SUPPORTED`` (validated first: ``validate``), or the
    problems that keep it from being one. ``others``: finds a resource of the same Bundle by
    reference; ``po_of``: a requisition's purchase order id."""
    kind = str(resource.get("resourceType"))
    out = Mapped(kind)
    find = _devices(resource, others or (lambda _ref: None))
    if kind == "SupplyDelivery":
        _supply_delivery(resource, find, po_of or (lambda _id: None), out)
    elif kind == "Procedure":
        _procedure(resource, find, out)
    elif kind == "DeviceUseStatement":
        _device_use(resource, find, out)
    elif kind == "Appointment":
        _appointment(resource, out)
    else:
        out.problems.append(Problem(kind, "malformed", f"{kind} is not taken here: send one of "
                                    f"{', '.join(SUPPORTED)} (see GET /fhir/r4/metadata)"))
    return out


def bundle_index(entries: list[dict[str, Any]]) -> Resolve:
    """Find an entry of a Bundle by its ``fullUrl`` or ``{resourceType}/{id}`` (give only the
    entries whose resource validated)."""
    index: dict[str, dict[str, Any]] = {}
    for entry in entries:
        res = (entry or {}).get("resource")
        if not isinstance(res, dict):
            continue
        if entry.get("fullUrl"):
            index[str(entry["fullUrl"])] = res
        if res.get("id"):
            index[f"{res.get('resourceType')}/{res['id']}"] = res
    return index.get


# -- answers ------------------------------------------------------------------------------

def issue(severity: str, code: str, text: str, ours: str | None = None, where: str | None = None) -> dict[str, Any]:
    """An OperationOutcome issue; ``ours``: our refusal code (details.coding, ``REFUSAL_SYSTEM``)."""
    out: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": text[:2000]}
    if ours:
        out["details"] = {"coding": [{"system": REFUSAL_SYSTEM, "code": ours}], "text": text[:2000]}
    if where:
        out["expression"] = [where]
    return out


def operation_outcome(issues: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": issues or [issue("information", "informational", "ok")]}


def problem_issues(problems: list[Problem]) -> list[dict[str, Any]]:
    kind = {"malformed": "structure", "missing_field": "required", "unknown_item": "not-found",
            "unknown_location": "not-found"}
    return [issue("error", kind.get(p.code, "processing"), p.message, p.code, p.where) for p in problems]


def outcome_issues(outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our outcomes (``Outcome.as_dict``) as issues: information for accepted, duplicate and
    queued; an error per refusal, with our code."""
    out = []
    for o in outcomes:
        if o.get("status") == "rejected":
            for err in o.get("errors") or [{"code": "rejected", "message": "refused"}]:
                out.append(issue("error", "processing", f"event {o.get('event_id')}: {err.get('message')}",
                                 err.get("code"), err.get("field") or None))
        else:
            out.append(issue("information", "informational", f"event {o.get('event_id')}: {o.get('status')}"))
    return out


def capability_statement(now: datetime) -> dict[str, Any]:
    """What this server takes and gives, exactly."""
    def create(kind: str, doc: str) -> dict[str, Any]:
        return {"type": kind, "interaction": [{"code": "create", "documentation": doc}]}
    return {
        "resourceType": "CapabilityStatement", "status": "active", "date": now.date().isoformat(),
        "kind": "instance", "fhirVersion": "4.0.1", "format": ["application/fhir+json", "json"],
        "software": {"name": "replenish"},
        "implementation": {"description": "replenish: event-sourced replenishment for hospitals"},
        "rest": [{
            "mode": "server",
            "documentation": "API keys as Authorization: Bearer; roles as the JSON API's. Items by "
                             f"{GTIN_SYSTEM} or {SKU_SYSTEM}; locations as Location/{{our id}}.",
            "security": {"description": "Authorization: Bearer API key"},
            "resource": [
                create("SupplyDelivery", "completed deliveries become receipts"),
                create("Procedure", "devices used (focalDevice, usedReference, usedCode) become usage by the case"),
                create("DeviceUseStatement", f"becomes usage; the location from the extension {LOCATION_EXTENSION}"),
                create("Appointment", "surgical appointments become the OR schedule"),
                {"type": "SupplyRequest", "interaction": [{"code": "search-type",
                                                           "documentation": "our open requisitions"}]},
            ],
            "interaction": [{"code": "batch", "documentation": f"each entry on its own; at most {MAX_ENTRIES}"},
                            {"code": "transaction", "documentation": "all or nothing: every entry valid and "
                             "mapped, then stored together, or only the refusals and nothing else (422)"}],
        }],
    }


def supply_request(req: dict[str, Any], base: str) -> list[dict[str, Any]]:
    """Our requisition (``streams.procurement.requisition_view``) as SupplyRequests, one per line."""
    status = "active" if req.get("status") not in ("rejected", "fulfilled") else (
        "cancelled" if req.get("status") == "rejected" else "completed")
    out = []
    for k, line in enumerate(req.get("lines") or []):
        sr: dict[str, Any] = {
            "resourceType": "SupplyRequest", "id": f"{req['id']}-{k}" if len(req["lines"]) > 1 else req["id"],
            "identifier": [{"system": "urn:replenish:requisition", "value": req["id"]}],
            "status": status, "category": {"text": req.get("kind") or "purchase"},
            "itemCodeableConcept": {"coding": [{"system": SKU_SYSTEM, "code": line.get("sku")}]},
            "quantity": {"value": line.get("quantity")},
            "deliverTo": {"reference": f"Location/{line.get('location')}"},
        }
        if req.get("raised_at"):
            sr["authoredOn"] = req["raised_at"]
        if req.get("supplier"):
            sr["supplier"] = [{"display": req["supplier"]}]
        if req.get("source"):
            sr["deliverFrom"] = {"reference": f"Location/{req['source']}"}
        out.append({"fullUrl": f"{base}/SupplyRequest/{sr['id']}", "resource": sr})
    return out


__all__ = ["GTIN_SYSTEM", "LOCATION_EXTENSION", "MAX_ENTRIES", "REFUSAL_SYSTEM", "SKU_SYSTEM", "SUPPORTED",
           "Mapped", "Problem", "bundle_index", "capability_statement", "issue", "map_resource",
           "operation_outcome", "outcome_issues", "problem_issues", "supply_request", "validate"]

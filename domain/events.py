"""The one event schema: types, who may post them, and the checks that need no state.

An event travels as a JSON object (see README, "Events"). ``check_envelope`` turns a raw
object into a normalised one (UTC ``occurred_at``, validated dates and numbers, identifiers
pseudonymised) or into field-level errors. Checks that need the catalog, lots or stock
(unknown item, unit, recalled lot, ...) live in ``domain.intake``.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from domain import codes as c
from domain.barcodes import parse_gs1
from domain.chain import canonical_json
from domain.epc import place_key
from domain.gtin import gtin_check_digit_ok

MASTER = "master"
STOCK = "stock"
LOT = "lot"
RECALL = "recall"
SCHEDULE = "schedule"
PURCHASE = "purchase"
PLAN = "plan"
SUPPLY = "supply"

# Fields that may identify a patient or a case: pseudonymised on the way in, never stored in clear.
IDENTIFYING_FIELDS = ("case_id", "patient_id", "mrn", "patient")

FUTURE_TOLERANCE = timedelta(minutes=10)
# A stock event older than this is refused (``stale_timestamp``): a clock reset to 0001 or a
# replayed archive would otherwise move the stock of days long closed. Master data are
# effective-dated and exempt. (REPLENISH_MAX_EVENT_AGE_DAYS sets it for a service.)
MAX_EVENT_AGE = timedelta(days=400)
# Identifiers (event ids, SKUs, lots, serials, locations, case ids, references...): at most
# this many characters, none of them a control or surrogate character (categories Cc, Cs).
MAX_IDENTIFIER_LENGTH = 128
IDENTIFIER_FIELDS = ("event_id", "sku", "gtin", "lot", "new_lot", "serial", "site", "location",
                     "from_location", "to_location", "restocked_from", "supplier", "po_id",
                     "case_id", "reference", "procedure")
IDENTIFIER_LISTS = ("lots", "serials", "substitutes")
LINE_IDENTIFIERS = ("sku", "location")
# No single stock fact moves more than this many base units. Beyond it a quantity is a typo,
# and balances could overflow to infinity, which JSON (and so the store) cannot hold.
MAX_QUANTITY = 1e9


@dataclass(frozen=True)
class EventSpec:
    type: str
    category: str
    required: tuple[str, ...]
    roles: frozenset[str]
    needs_item: bool = False
    needs_quantity: bool = False


_OPS = frozenset({c.SCANNER, c.ADMIN})
_ADMIN = frozenset({c.ADMIN})
_PLANNERS = frozenset({c.BUYER, c.ADMIN})
# A supplier's messages (acknowledgement, advance shipping notice) and the receiving dock's
# inspections come through gateways and devices, or are keyed in by a buyer.
_SUPPLY_CHAIN = frozenset({c.SCANNER, c.BUYER, c.ADMIN})

EVENT_TYPES: dict[str, EventSpec] = {
    s.type: s
    for s in (
        EventSpec("item_registered", MASTER, ("sku", "base_unit"), _ADMIN),
        EventSpec("location_registered", MASTER, ("location", "site"), _ADMIN),
        EventSpec("supplier_registered", MASTER, ("supplier",), _ADMIN),
        EventSpec("receipt", STOCK, ("location",), _OPS, True, True),
        EventSpec("usage", STOCK, ("location",), _OPS, True, True),
        EventSpec("return", STOCK, ("location",), _OPS, True, True),
        EventSpec("waste", STOCK, ("location",), _OPS, True, True),
        EventSpec("transfer", STOCK, ("from_location", "to_location"), _OPS, True, True),
        EventSpec("stock_count", STOCK, ("location",), _OPS, True, True),
        # Use the shelf could not meet (a scan at an empty bin, a cabinet's failed pick): demand
        # seen, not stock moved (issue 20: a stockout no longer hides demand).
        EventSpec("demand_unmet", STOCK, ("location",), _OPS, True, True),
        EventSpec("lot_changed", LOT, ("lot", "change", "reason"), _ADMIN, True),
        EventSpec("recall_issued", RECALL, ("reference",), _ADMIN, True),
        EventSpec("recall_closed", RECALL, ("reference",), _ADMIN),
        # The people doing the recall at a location report what they found (devices and
        # gateways, like a waste or a return), or an admin for them.
        EventSpec("recall_confirmed", RECALL, ("reference", "location"), _OPS),
        EventSpec("surgery_scheduled", SCHEDULE, ("case_id", "procedure", "location", "scheduled_for"), _OPS),
        EventSpec("surgery_cancelled", SCHEDULE, ("case_id",), _OPS),
        EventSpec("surgery_completed", SCHEDULE, ("case_id",), _OPS),
        # Buyers issue orders (an approved requisition's is recorded as by its approver); ERP
        # gateways and admins post those placed elsewhere.
        EventSpec("po_issued", PURCHASE, ("po_id", "supplier", "location", "lines"), _SUPPLY_CHAIN),
        EventSpec("po_acknowledged", PURCHASE, ("po_id",), _SUPPLY_CHAIN),
        EventSpec("shipment_sent", PURCHASE, ("po_id",), _SUPPLY_CHAIN),
        EventSpec("inspection_result", PURCHASE, ("location",), _SUPPLY_CHAIN, True),
        EventSpec("supplier_contract", SUPPLY, ("supplier", "price"), _PLANNERS, True),
        EventSpec("supplier_quote", SUPPLY, ("supplier", "price"), _PLANNERS, True),
        EventSpec("policy_override", PLAN, ("sku", "location", "reason"), _PLANNERS),
    )
}

LOT_CHANGES = ("expiry_corrected", "relabelled", "hold", "release")
RECALL_OUTCOMES = ("returned", "destroyed", "not_found")  # quantities of a recall_confirmed
STRUCTURED_FIELDS = frozenset({"lines", "price"})  # required fields that are not text


@dataclass(frozen=True)
class FieldError:
    field: str | None
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "code": self.code, "message": self.message}


def _utc_text(t: datetime) -> str:
    """``2026-11-25T08:30:00.000000Z``: fixed width, so instants compare as strings.

    >>> _utc_text(datetime.fromisoformat("2026-11-25T09:30:00.5+01:00"))
    '2026-11-25T08:30:00.500000Z'
    """
    offset = t.utcoffset()
    u = t - offset if offset else t
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 (twice as fast as format specs)
        u.year, u.month, u.day, u.hour, u.minute, u.second, u.microsecond)


_last_iso_utc: tuple[datetime | None, str] = (None, "")


def iso_utc(t: datetime) -> str:
    """Fixed-width UTC form, so that instants compare as strings."""
    global _last_iso_utc
    last = _last_iso_utc
    if last[0] is t:  # the batch's ``now``, formatted for each event and decision it records
        return last[1]
    text = _utc_text(t)
    _last_iso_utc = (t, text)
    return text


def parse_instant(value: Any) -> datetime | None:
    """An ISO 8601 instant with an offset; None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


def parse_date(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) != 10:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_whole(quantity: float) -> bool:
    """Whether ``quantity`` is a whole number of units, up to floating-point error (0.1 box of
    10 is 1.0000000000000002 each: whole).

    >>> is_whole(3.0), is_whole(0.1 * 10), is_whole(0.5)
    (True, True, False)
    """
    return abs(quantity - round(quantity)) <= 1e-6  # (floats near MAX_QUANTITY err by ~1e-7)


def pseudonymise(value: Any, key: bytes) -> str:
    """Keyed hash (HMAC-SHA-256) of an identifier: the same case always maps to the same
    pseudonym, and it cannot be reversed or recomputed without the key."""
    digest = hmac.new(key, str(value).encode(), hashlib.sha256).hexdigest()
    return "ps_" + digest[:32]


def is_pseudonym(value: Any) -> bool:
    """A value of the pseudonyms' form (``ps_`` and 32 hex digits)."""
    return (isinstance(value, str) and len(value) == 35 and value.startswith("ps_")
            and all(ch in "0123456789abcdef" for ch in value[3:]))


def pseudonymise_event(raw: dict[str, Any], key: bytes) -> dict[str, Any]:
    """A copy of ``raw`` with every identifying field replaced by its pseudonym. A value that
    already is one is kept, so pseudonymising twice (the distributed API before producing to
    Kafka, then the worker's intake) gives what pseudonymising once does.

    >>> once = pseudonymise_event({"case_id": "OR-2026-0042"}, b"k" * 32)
    >>> pseudonymise_event(once, b"k" * 32) == once and once["case_id"].startswith("ps_")
    True
    """
    if raw.keys().isdisjoint(IDENTIFYING_FIELDS):
        return raw
    safe = dict(raw)
    for f in IDENTIFYING_FIELDS:
        if f in safe and not is_blank(safe[f]) and not is_pseudonym(safe[f]):
            value = safe[f]
            if isinstance(value, str) and identifier_problem(value) is not None:
                # Not an identifier the intake takes: its hash alone, marked so that it is
                # still refused as malformed wherever it goes next (never in clear).
                safe[f] = redacted_identifier(value, keep=0) + "\x00"
            else:
                safe[f] = pseudonymise(value, key)
    return safe


def is_blank(value: Any) -> bool:
    """None or a string of only spaces: no identifier at all (a form field left empty)."""
    return value is None or (isinstance(value, str) and not value.strip())


def identifier_problem(value: str) -> str | None:
    """Why ``value`` cannot be an identifier, or None when it can."""
    if len(value) > MAX_IDENTIFIER_LENGTH:
        return f"is {len(value):,} characters long; at most {MAX_IDENTIFIER_LENGTH} are allowed"
    if value.isascii() and value.isprintable():  # (the usual case, first)
        return None
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cs"):
            return f"holds the control or surrogate character U+{ord(ch):04X}"
    return None


def check_identifiers(raw: dict[str, Any]) -> list[FieldError]:
    """Identifier fields that are too long or hold control or surrogate characters
    (``malformed``); values that are not text are left to ``check_envelope``."""
    errors = []
    for name in IDENTIFIER_FIELDS:
        value = raw.get(name)
        if value.__class__ is str and (problem := identifier_problem(value)) is not None:
            errors.append(FieldError(name, c.MALFORMED, f"'{name}' {problem}"))
    for name in IDENTIFIER_LISTS:
        values = raw.get(name)
        if isinstance(values, list):
            for i, value in enumerate(values):
                if isinstance(value, str) and (problem := identifier_problem(value)) is not None:
                    errors.append(FieldError(f"{name}[{i}]", c.MALFORMED, f"'{name}[{i}]' {problem}"))
    lines = raw.get("lines")
    if isinstance(lines, list):
        for i, line in enumerate(lines):
            for name in LINE_IDENTIFIERS:
                value = line.get(name) if isinstance(line, dict) else None
                if isinstance(value, str) and (problem := identifier_problem(value)) is not None:
                    errors.append(FieldError(f"lines[{i}].{name}", c.MALFORMED,
                                             f"'lines[{i}].{name}' {problem}"))
    return errors


def redacted_identifier(value: str, keep: int = 32) -> str:
    r"""What is stored of an identifier refused as malformed: its first ``keep`` characters,
    control and surrogate characters escaped, and the hash of the whole (never the whole: it
    may be a megabyte, or hold characters no store takes).

    >>> redacted_identifier("A" * 1000, keep=4)
    'AAAA…sha256:c2e686823489ced2'
    >>> redacted_identifier("ab\x00c", keep=8)
    'ab\\x00c…sha256:6c032e631d39a14d'
    """
    head = value[:keep].encode("unicode_escape", "backslashreplace").decode("ascii")[:keep]
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{head}…sha256:{digest}"


def redact_identifiers(raw: dict[str, Any], errors: list[FieldError], mark: str = "") -> dict[str, Any]:
    """A copy of ``raw`` with each identifier named in ``errors`` replaced by its redacted
    form (a case id by its hash alone: no part of it is kept in clear), followed by ``mark``
    (a NUL keeps the redacted value one that ``check_identifiers`` still refuses)."""
    safe = dict(raw)
    for err in errors:
        field_name = err.field or ""
        if field_name in IDENTIFIER_FIELDS:
            value = safe[field_name]
            safe[field_name] = redacted_identifier(value, keep=0 if field_name in IDENTIFYING_FIELDS else 32) + mark
        elif "[" in field_name:
            name, _, rest = field_name.partition("[")
            index = int(rest.split("]")[0])
            if name == "lines":
                key = field_name.rsplit(".", 1)[1]
                lines = safe["lines"] = list(safe["lines"])
                lines[index] = dict(lines[index], **{key: redacted_identifier(lines[index][key]) + mark})
            else:
                values = safe[name] = list(safe[name])
                values[index] = redacted_identifier(values[index]) + mark
    return safe


def fingerprint(event: Any) -> str:
    """Content identity of an event as sent (key order aside), for de-duplication."""
    return hashlib.sha256(canonical_json(event)).hexdigest()[:32]


def _text(event: dict[str, Any], name: str, errors: list[FieldError], required: bool) -> str | None:
    value = event.get(name)
    if value.__class__ is str and value:  # (the usual case, first)
        return value  # type: ignore[no-any-return]
    if value is None or value == "":
        if required:
            errors.append(FieldError(name, c.MISSING_FIELD, f"'{name}' is required"))
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        errors.append(FieldError(name, c.MALFORMED, f"'{name}' must be a string"))
        return None
    return str(value)


def check_envelope(
    raw: dict[str, Any], role: str, now: datetime, max_age: timedelta = MAX_EVENT_AGE,
) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """Stateless checks of one (already pseudonymised) event.

    Returns the normalised event (``occurred_at`` in UTC, ``sku``/``gtin`` as text, dates
    checked) or the list of errors. The role check comes first: a caller that may not post a
    type learns nothing else about it. A stock event older than ``max_age`` is refused
    (``stale_timestamp``).
    """
    errors: list[FieldError] = []
    event_id = _text(raw, "event_id", errors, required=True)
    etype = raw.get("type")
    if etype is None or etype == "":
        errors.append(FieldError("type", c.MISSING_FIELD, "'type' is required"))
        return None, errors
    spec = EVENT_TYPES.get(etype) if isinstance(etype, str) else None
    if spec is None:
        errors.append(FieldError("type", c.MALFORMED,
                                 f"unknown event type {etype!r}; known: {', '.join(EVENT_TYPES)}"))
        return None, errors
    if role not in spec.roles:
        errors.append(FieldError("type", c.FORBIDDEN_TYPE,
                                 f"the role '{role}' may not post '{etype}' events"))
        return None, errors

    occurred_raw = raw.get("occurred_at")
    occurred = parse_instant(occurred_raw)
    if occurred_raw is None:
        errors.append(FieldError("occurred_at", c.MISSING_FIELD, "'occurred_at' is required"))
    elif occurred is None:
        errors.append(FieldError("occurred_at", c.MALFORMED,
                                 "'occurred_at' must be an ISO 8601 instant with an offset, "
                                 "e.g. 2026-11-25T09:30:00+01:00"))
    elif occurred > now + FUTURE_TOLERANCE:
        errors.append(FieldError("occurred_at", c.FUTURE_TIMESTAMP,
                                 f"'occurred_at' is {occurred - now} ahead of the server clock "
                                 f"(more than {FUTURE_TOLERANCE} is refused)"))
    elif spec.category == STOCK and occurred < now - max_age:
        errors.append(FieldError("occurred_at", c.STALE_TIMESTAMP,
                                 f"'occurred_at' is {(now - occurred).days:,} days before the server "
                                 f"clock; stock events older than {max_age.days} days are refused"))

    event = dict(raw)
    if event_id is not None:
        event["event_id"] = event_id
    if occurred is not None:
        event["occurred_at"] = _utc_text(occurred)  # (not iso_utc: each event's own instant)

    for name in spec.required:
        if name in STRUCTURED_FIELDS:  # not text: present here, its shape checked below
            if event.get(name) is None:
                errors.append(FieldError(name, c.MISSING_FIELD, f"'{name}' is required"))
        else:
            _text(event, name, errors, required=True)
    for name in ("site", "location", "lot", "serial", "supplier", "po_id", "unit"):
        given = event.get(name)
        if given is None or given.__class__ is str:  # absent, or text already (the usual case)
            continue
        if name not in spec.required:
            value = _text(event, name, errors, required=False)
            if value is not None:
                event[name] = value

    if spec.category == STOCK and isinstance(event.get("barcode"), str) and not (
            event.get("gtin") or event.get("sku")):
        scanned, reason = parse_gs1(event["barcode"])
        if scanned is None:
            errors.append(FieldError("barcode", c.MALFORMED, reason or "unreadable barcode"))
        else:
            for name, value in scanned.items():
                event.setdefault(name, value)

    if spec.needs_item or spec.type == "item_registered":
        sku = _text(event, "sku", errors, required=False)
        gtin = _text(event, "gtin", errors, required=False)
        if sku is not None:
            event["sku"] = sku
        if gtin is not None:
            event["gtin"] = gtin
            if not gtin_check_digit_ok(gtin):
                errors.append(FieldError("gtin", c.INVALID_GTIN,
                                         f"GTIN {gtin} is not 8, 12, 13 or 14 digits with a valid check digit"))
        if spec.needs_item and sku is None and gtin is None:
            errors.append(FieldError("sku", c.MISSING_FIELD, "'sku' or 'gtin' is required"))

    if spec.type == "demand_unmet":
        for name in ("lot", "serial", "case_id"):
            if event.get(name) not in (None, ""):
                errors.append(FieldError(name, c.MALFORMED,
                                         f"demand not met used no stock: leave out '{name}' (send the use itself "
                                         "when stock is found)"))

    if spec.needs_quantity:
        q = event.get("quantity")
        if q is None:
            errors.append(FieldError("quantity", c.MISSING_FIELD, "'quantity' is required"))
        elif not is_number(q):
            errors.append(FieldError("quantity", c.INVALID_QUANTITY, "'quantity' must be a number"))
        elif spec.type == "stock_count" and q < 0:
            errors.append(FieldError("quantity", c.INVALID_QUANTITY, "a counted quantity cannot be negative"))
        elif spec.type != "stock_count" and q <= 0:
            errors.append(FieldError("quantity", c.INVALID_QUANTITY,
                                     f"'quantity' must be greater than zero, got {q}"))
        elif q > MAX_QUANTITY:
            errors.append(FieldError("quantity", c.INVALID_QUANTITY,
                                     f"'quantity' {q} is more than {MAX_QUANTITY:,.0f}"))

    if event.get("unit_price") is not None and not (is_number(event["unit_price"]) and event["unit_price"] >= 0):
        errors.append(FieldError("unit_price", c.MALFORMED, "'unit_price' must be a non-negative number"))

    for name in ("expiry", "new_expiry"):
        if event.get(name) is not None and parse_date(event[name]) is None:
            errors.append(FieldError(name, c.MALFORMED, f"'{name}' must be a date, YYYY-MM-DD"))

    _check_type_specific(spec.type, event, errors)
    return (None, errors) if errors else (event, errors)


def _normalise_instant(event: dict[str, Any], name: str, errors: list[FieldError]) -> None:
    """An optional instant field: to the fixed-width UTC form, or an error when unreadable."""
    value = event.get(name)
    if value is None:
        return
    when = parse_instant(value)
    if when is None:
        errors.append(FieldError(name, c.MALFORMED, f"'{name}' must be an ISO 8601 instant with an offset"))
    else:
        event[name] = _utc_text(when)


def _check_type_specific(etype: str, event: dict[str, Any], errors: list[FieldError]) -> None:
    if etype == "item_registered":
        units = event.get("units", {})
        if not isinstance(units, dict) or not all(is_number(v) and v > 0 for v in units.values()):
            errors.append(FieldError("units", c.MALFORMED,
                                     "'units' must map unit names to positive numbers of base units"))
        gtins = event.get("gtins", {})
        if not isinstance(gtins, dict):
            errors.append(FieldError("gtins", c.MALFORMED, "'gtins' must map packaging levels to GTINs"))
        else:
            for level, g in gtins.items():
                if not isinstance(g, str) or not gtin_check_digit_ok(g):
                    errors.append(FieldError(f"gtins.{level}", c.INVALID_GTIN,
                                             f"GTIN {g!r} for '{level}' has no valid check digit"))
                elif isinstance(units, dict) and level not in units:
                    errors.append(FieldError(f"gtins.{level}", c.UNKNOWN_UNIT,
                                             f"packaging level '{level}' has no entry in 'units'"))
        crit = event.get("criticality", "normal")
        if crit not in ("critical", "high", "normal"):
            errors.append(FieldError("criticality", c.MALFORMED,
                                     "'criticality' must be critical, high or normal"))
        for name in ("pack_size", "lead_time_days", "lead_time_sd_days", "unit_cost"):
            v = event.get(name)
            if v is not None and not (is_number(v) and v >= 0):
                errors.append(FieldError(name, c.MALFORMED, f"'{name}' must be a non-negative number"))
        for flag in ("consignment", "divisible"):
            if flag in event and not isinstance(event[flag], bool):
                errors.append(FieldError(flag, c.MALFORMED, f"'{flag}' must be true or false"))
        subs = event.get("substitutes")
        if subs is not None and not (isinstance(subs, list) and all(isinstance(x, str) and x for x in subs)):
            errors.append(FieldError("substitutes", c.MALFORMED, "'substitutes' must be a list of SKUs"))
    elif etype == "supplier_registered":
        certs = event.get("certificates")
        if certs is not None and not isinstance(certs, list):
            errors.append(FieldError("certificates", c.MALFORMED, "'certificates' must be a list"))
        for i, cert in enumerate(certs if isinstance(certs, list) else []):
            if not isinstance(cert, dict) or not isinstance(cert.get("name"), str) or not cert["name"]:
                errors.append(FieldError(f"certificates[{i}].name", c.MISSING_FIELD, "each certificate needs a 'name'"))
                continue
            for f in ("valid_from", "valid_until"):
                if cert.get(f) is not None and parse_date(cert[f]) is None:
                    errors.append(FieldError(f"certificates[{i}].{f}", c.MALFORMED, f"'{f}' must be a date, YYYY-MM-DD"))
    elif etype == "location_registered":
        tz = event.get("timezone", "UTC")
        try:
            from zoneinfo import ZoneInfo
            ZoneInfo(tz)
        except Exception:
            errors.append(FieldError("timezone", c.MALFORMED, f"unknown IANA time zone {tz!r}"))
        if event.get("gln") is not None and place_key(event["gln"]) is None:
            errors.append(FieldError("gln", c.MALFORMED, "'gln' must be a GLN (13 digits), an SGLN URN "
                                     "(urn:epc:id:sgln:...) or a GS1 Digital Link of one (.../414/{gln})"))
    elif etype == "lot_changed":
        change = event.get("change")
        if change is not None and change not in LOT_CHANGES:
            errors.append(FieldError("change", c.MALFORMED, f"'change' must be one of {', '.join(LOT_CHANGES)}"))
        if change == "expiry_corrected" and event.get("new_expiry") is None:
            errors.append(FieldError("new_expiry", c.MISSING_FIELD, "'new_expiry' is required to correct an expiry"))
        if change == "relabelled" and not event.get("new_lot"):
            errors.append(FieldError("new_lot", c.MISSING_FIELD, "'new_lot' is required to relabel a lot"))
    elif etype == "recall_issued":
        lots, serials = event.get("lots"), event.get("serials")
        if not lots and not serials:
            errors.append(FieldError("lots", c.MISSING_FIELD, "'lots' or 'serials' (a non-empty list) is required"))
        for name, value in (("lots", lots), ("serials", serials)):
            if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) and v for v in value)):
                errors.append(FieldError(name, c.MALFORMED, f"'{name}' must be a list of strings"))
    elif etype == "recall_confirmed":
        given = [f for f in RECALL_OUTCOMES if event.get(f) is not None]
        if not given:
            errors.append(FieldError("returned", c.MISSING_FIELD,
                                     "give 'returned', 'destroyed' and/or 'not_found' (quantities)"))
        for f in given:
            if not (is_number(event[f]) and 0 <= event[f] <= MAX_QUANTITY):
                errors.append(FieldError(f, c.INVALID_QUANTITY, f"'{f}' must be a non-negative number"))
    elif etype == "surgery_scheduled":
        _normalise_instant(event, "scheduled_for", errors)
    elif etype == "po_issued":
        _normalise_instant(event, "expected_at", errors)
        lines = event.get("lines")
        if lines is not None and (not isinstance(lines, list) or not lines):
            errors.append(FieldError("lines", c.MALFORMED, "'lines' must be a non-empty list"))
        elif isinstance(lines, list):
            for i, line in enumerate(lines):
                if not isinstance(line, dict) or not isinstance(line.get("sku"), str):
                    errors.append(FieldError(f"lines[{i}].sku", c.MISSING_FIELD, "each line needs a 'sku'"))
                elif not (is_number(line.get("quantity")) and line["quantity"] > 0):
                    errors.append(FieldError(f"lines[{i}].quantity", c.INVALID_QUANTITY,
                                             "each line needs a quantity greater than zero"))
                elif line.get("unit_price") is not None and not (
                        is_number(line["unit_price"]) and line["unit_price"] >= 0):
                    errors.append(FieldError(f"lines[{i}].unit_price", c.MALFORMED,
                                             "'unit_price' must be a non-negative number"))
                elif line.get("location") is not None and not isinstance(line["location"], str):
                    errors.append(FieldError(f"lines[{i}].location", c.MALFORMED, "'location' must be a string"))
    elif etype == "po_acknowledged":
        _check_lines(event, errors, "confirmed", required=False)
        for i, line in enumerate(event.get("lines") or []):
            if isinstance(line, dict) and line.get("backorder_date") is not None and parse_date(
                    line["backorder_date"]) is None:
                errors.append(FieldError(f"lines[{i}].backorder_date", c.MALFORMED,
                                         "'backorder_date' must be a date, YYYY-MM-DD"))
    elif etype == "shipment_sent":
        _normalise_instant(event, "expected_at", errors)
        _check_lines(event, errors, "quantity", required=False)
    elif etype == "inspection_result":
        for f in ("accepted", "rejected"):
            if not (is_number(event.get(f)) and 0 <= event[f] <= MAX_QUANTITY):
                errors.append(FieldError(f, c.INVALID_QUANTITY if f in event else c.MISSING_FIELD,
                                         f"'{f}' (units) is required, a non-negative number"))
        if event.get("rejected") and not event.get("reason"):
            errors.append(FieldError("reason", c.MISSING_FIELD, "a 'reason' is required when units are rejected"))
        if not event.get("po_id") and not event.get("supplier"):
            errors.append(FieldError("po_id", c.MISSING_FIELD, "'po_id' or 'supplier' is required"))
    elif etype in ("supplier_contract", "supplier_quote"):
        _check_terms(event, errors)
    elif etype == "policy_override":
        pinned = [f for f in ("reorder_point", "order_up_to") if event.get(f) is not None]
        for f in pinned:
            if not (is_number(event[f]) and event[f] >= 0):
                errors.append(FieldError(f, c.INVALID_QUANTITY, f"'{f}' must be a non-negative number"))
        until = event.get("freeze_until")
        _normalise_instant(event, "freeze_until", errors)
        if not pinned and until is None and not event.get("clear"):
            errors.append(FieldError("reorder_point", c.MISSING_FIELD,
                                     "give 'reorder_point' and/or 'order_up_to' to pin, 'freeze_until' "
                                     "to freeze, or 'clear': true to end an override"))
    elif etype == "transfer" and event.get("from_location") == event.get("to_location") and event.get("to_location"):
        errors.append(FieldError("to_location", c.MALFORMED, "a transfer must go to another location"))


def _check_lines(event: dict[str, Any], errors: list[FieldError], quantity: str, required: bool) -> None:
    """Optional order lines: a list of objects, each naming a ``sku``, with non-negative numbers."""
    lines = event.get("lines")
    if lines is None:
        return
    if not isinstance(lines, list):
        errors.append(FieldError("lines", c.MALFORMED, "'lines' must be a list"))
        return
    for i, line in enumerate(lines):
        if not isinstance(line, dict) or not isinstance(line.get("sku"), str):
            errors.append(FieldError(f"lines[{i}].sku", c.MISSING_FIELD, "each line needs a 'sku'"))
            continue
        for f in (quantity, "backordered"):
            v = line.get(f)
            if (v is not None or (required and f == quantity)) and not (is_number(v) and 0 <= v <= MAX_QUANTITY):
                errors.append(FieldError(f"lines[{i}].{f}", c.INVALID_QUANTITY, f"'{f}' must be a non-negative number"))


def _check_terms(event: dict[str, Any], errors: list[FieldError]) -> None:
    """A contract's or quote's price, price breaks, minimum order, lead time and validity."""
    if event.get("price") is not None and not (is_number(event["price"]) and event["price"] >= 0):
        errors.append(FieldError("price", c.MALFORMED, "'price' must be a non-negative number (per base unit)"))
    breaks = event.get("price_breaks")
    if breaks is not None:
        if not isinstance(breaks, list):
            errors.append(FieldError("price_breaks", c.MALFORMED, "'price_breaks' must be a list"))
        else:
            for i, b in enumerate(breaks):
                if not (isinstance(b, dict) and is_number(b.get("min_quantity")) and b["min_quantity"] >= 0
                        and is_number(b.get("price")) and b["price"] >= 0):
                    errors.append(FieldError(f"price_breaks[{i}]", c.MALFORMED,
                                             "each price break needs 'min_quantity' and 'price', non-negative numbers"))
    for f in ("min_order", "lead_time_days", "lead_time_sd_days"):
        if event.get(f) is not None and not (is_number(event[f]) and event[f] >= 0):
            errors.append(FieldError(f, c.MALFORMED, f"'{f}' must be a non-negative number"))
    for f in ("valid_from", "valid_until"):
        if event.get(f) is not None and parse_date(event[f]) is None:
            errors.append(FieldError(f, c.MALFORMED, f"'{f}' must be a date, YYYY-MM-DD"))
    if (event.get("valid_from") and event.get("valid_until") and parse_date(event["valid_from"])
            and parse_date(event["valid_until"]) and event["valid_until"] < event["valid_from"]):
        errors.append(FieldError("valid_until", c.MALFORMED, "'valid_until' is before 'valid_from'"))

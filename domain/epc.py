"""GS1 identifiers as EPCIS 2.0 writes them (GS1 Tag Data Standard 2.x, "pure identity"
EPC URIs, and GS1 Digital Link URIs): the item of an SGTIN (a serialised unit), an LGTIN (a
lot of a trade item) or an SGTIN pattern (any unit of a trade item), and the place of an SGLN.
Digital Link URIs are read with ``biip`` (``domain.barcodes``); the URNs here: the GTIN is
rebuilt from the company prefix and the item reference (whose first digit is the indicator)
with its check digit.

>>> epc_item("urn:epc:id:sgtin:0614141.107346.2018")
({'gtin': '10614141073464', 'serial': '2018'}, None)
>>> epc_item("https://id.gs1.org/01/70614141123451/10/998877")
({'gtin': '70614141123451', 'lot': '998877'}, None)
>>> epc_item("urn:epc:id:sscc:0614141.1234567890")[1]
'an EPC of kind sscc (a logistic unit, a returnable asset, a person or a place): not a trade item'
>>> place_key("urn:epc:id:sgln:0614141.07346.1234"), place_key("https://id.gs1.org/414/0614141073467")
('0614141073467/1234', '0614141073467')

And written back (``item_uri``, ``place_uri``: GS1 Digital Link, which reads back the same):

>>> item_uri("70614141123451", lot="A1/8"), epc_item(item_uri("70614141123451", lot="A1/8"))[0]
('https://id.gs1.org/01/70614141123451/10/A1%2F8', {'gtin': '70614141123451', 'lot': 'A1/8'})
>>> place_uri("0614141073467/1234")
'https://id.gs1.org/414/0614141073467/254/1234'
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import ParseResult, quote, unquote, urlparse

from domain.barcodes import parse_gs1
from domain.gtin import check_digit

_URN = re.compile(r"^urn:epc:(id|class|idpat):([a-z0-9]+):(.*)$")
_DIGITS = re.compile(r"[0-9]+")


def _gtin(company: str, reference: str) -> str | None:
    if not (_DIGITS.fullmatch(company) and _DIGITS.fullmatch(reference)) or len(company) + len(reference) != 13:
        return None
    body = reference[0] + company + reference[1:]
    return body + check_digit(body)


def _url(uri: str) -> ParseResult | None:
    """``uri`` parsed as a URL; None when it is none at all (``urlparse`` raises on an
    unbalanced "[" in the host, ...)."""
    try:
        return urlparse(uri)
    except ValueError:
        return None


def epc_item(uri: str) -> tuple[dict[str, Any] | None, str | None]:
    """The item an EPC or EPC class names: ``{"gtin", "serial"}`` (an SGTIN), ``{"gtin",
    "lot"}`` (an LGTIN), ``{"gtin"}`` (an SGTIN pattern, or a Digital Link with a GTIN alone),
    or None and why not."""
    if not isinstance(uri, str) or not uri:
        return None, "no identifier"
    m = _URN.match(uri)
    if m is None:
        url = _url(uri)
        if url is not None and url.scheme in ("http", "https") and "/01/" in uri:
            found, why = parse_gs1(uri)
            if found is None:
                return None, why
            out = {k: found[k] for k in ("gtin", "lot", "serial") if found.get(k)}
            return out, None
        return None, f"not an EPC URI or a GS1 Digital Link with a GTIN: {uri[:120]}"
    form, kind, rest = m.groups()
    parts = rest.split(".")
    if kind not in ("sgtin", "lgtin"):
        return None, (f"an EPC of kind {kind} (a logistic unit, a returnable asset, a person or a place): "
                      "not a trade item")
    if len(parts) != 3:
        return None, f"a malformed {kind} URI: {uri[:120]}"
    gtin = _gtin(parts[0], parts[1])
    if gtin is None:
        return None, f"a malformed {kind} URI (company prefix and item reference are 13 digits): {uri[:120]}"
    tail = unquote(parts[2])
    if kind == "sgtin" and form == "idpat" and tail == "*":
        return {"gtin": gtin}, None
    if kind == "sgtin" and form == "id":
        return {"gtin": gtin, "serial": tail}, None
    if kind == "lgtin" and form == "class":
        return {"gtin": gtin, "lot": tail}, None
    return None, f"an EPC pattern that names no single item, lot or unit: {uri[:120]}"


def place_key(uri: str) -> str | None:
    """A place's GLN, with ``/extension`` when it names a part of one (an SGLN's extension
    other than 0, a Digital Link's AI 254); None when ``uri`` is no SGLN, GLN Digital Link or
    13-digit GLN with its check digit."""
    if not isinstance(uri, str):
        return None
    if _DIGITS.fullmatch(uri) and len(uri) == 13:  # a GLN written alone
        return uri if check_digit(uri[:-1]) == uri[-1] else None
    m = _URN.match(uri)
    if m is not None:
        form, kind, rest = m.groups()
        parts = rest.split(".")
        if form != "id" or kind != "sgln" or len(parts) != 3:
            return None
        company, reference, ext = parts
        if not (_DIGITS.fullmatch(company) and (reference == "" or _DIGITS.fullmatch(reference))) \
                or len(company) + len(reference) != 12:
            return None
        body = company + reference
        gln = body + check_digit(body)
        ext = unquote(ext)
        return gln if ext in ("", "0") else f"{gln}/{ext}"
    parsed = _url(uri)
    if parsed is None or parsed.scheme not in ("http", "https"):
        return None
    segments = [s for s in parsed.path.split("/") if s]
    if len(segments) >= 2 and segments[0] == "414" and _DIGITS.fullmatch(segments[1]) and len(segments[1]) == 13:
        gln = segments[1]
        if check_digit(gln[:-1]) != gln[-1]:
            return None
        if len(segments) >= 4 and segments[2] == "254" and segments[3] not in ("", "0"):
            return f"{gln}/{unquote(segments[3])}"
        return gln
    return None


DIGITAL_LINK = "https://id.gs1.org"


def item_uri(gtin: str | None, lot: str | None = None, serial: str | None = None, sku: str = "") -> str:
    """A trade item's GS1 Digital Link URI: of a lot (AI 10), a serialised unit (AI 21) or the
    GTIN alone (``epc_item`` reads it back); for an item without a GTIN (``gtin`` None), our own
    ``urn:replenish:item:{sku}[:lot:{lot}][:serial:{serial}]`` (EPCIS 2.0 takes any URI)."""
    if gtin is None:
        return f"urn:replenish:item:{quote(sku, safe='')}" + \
            "".join(f":{name}:{quote(v, safe='')}" for name, v in (("lot", lot), ("serial", serial)) if v is not None)
    return f"{DIGITAL_LINK}/01/{gtin.zfill(14)}" + \
        "".join(f"/{ai}/{quote(v, safe='')}" for ai, v in (("10", lot), ("21", serial)) if v is not None)


def place_uri(key: str) -> str:
    """A place's GS1 Digital Link URI from its ``place_key`` (a GLN, with ``/extension`` for
    a part of a place: AI 254)."""
    gln, _, ext = key.partition("/")
    return f"{DIGITAL_LINK}/414/{gln}" + (f"/254/{quote(ext, safe='')}" if ext else "")

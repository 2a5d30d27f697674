"""GS1 barcodes as scanners read them: GS1-128 or DataMatrix element strings (AIs 01, 10,
17, 21; with or without the FNC1/GS separator and symbology identifier), their human-readable
form with the AIs in parentheses, and GS1 Digital Link URIs. Parsed with ``biip``."""

from __future__ import annotations

from typing import Any

import biip
from biip.gs1_messages import GS1Message

GS = "\x1d"
# Ways scanners and keyboard wedges spell the group separator in text.
GS_SPELLINGS = ("<GS>", "{GS}", "[GS]", "\\x1d", "␝")


def parse_gs1(barcode: str) -> tuple[dict[str, Any] | None, str | None]:
    """The GTIN, lot, expiry (ISO date) and serial in a barcode, or a reason it has none.

    A GS1 expiry with day 00 means the last day of that month.

    >>> parse_gs1("]d2010950110102091717190500" + "10ABC1")[0]
    {'gtin': '09501101020917', 'expiry': '2019-05-31', 'lot': 'ABC1'}
    >>> parse_gs1("(01)09501101020917(17)190500(10)ABC1")[0]  # as printed under the symbol
    {'gtin': '09501101020917', 'expiry': '2019-05-31', 'lot': 'ABC1'}
    """
    text = barcode.strip()
    for spelling in GS_SPELLINGS:
        text = text.replace(spelling, GS)
    result: Any = None
    try:
        if text.startswith("("):  # the human-readable form printed under the symbol: (01)…(10)…
            message: Any = GS1Message.parse_hri(text)
            rebuilt = "".join(f"({es.ai.ai}){es.value}" for es in message.element_strings)
            if rebuilt != text:  # (biip skips what is not an AI: a lot holding parentheses)
                return None, ("a human-readable GS1 string whose parentheses do not all enclose AIs: send "
                              "the element string without them")
        else:
            result = biip.parse(text)
            message = result.gs1_message or result.gs1_digital_link_uri
    except Exception as exc:  # biip raises its own ParseError subclasses and ValueError
        return None, f"not a GS1 barcode: {exc}"
    fields: dict[str, Any] = {}
    if message is not None:
        for es in message.element_strings:
            ai = es.ai.ai
            if ai == "01":
                fields["gtin"] = es.value
            elif ai == "17" and es.date is not None:
                fields["expiry"] = es.date.isoformat()
            elif ai == "10":
                fields["lot"] = es.value
            elif ai == "21":
                fields["serial"] = es.value
    elif result is not None and result.gtin is not None:
        fields["gtin"] = result.gtin.value
    if "gtin" not in fields:
        reasons = [r for r in (result.gs1_message_error, result.gtin_error) if r] if result is not None else []
        return None, "no GTIN (AI 01) in the barcode" + (f": {reasons[0]}" if reasons else "")
    return fields, None

"""GTIN check digits and GS1 barcode parsing (pure functions)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.barcodes import parse_gs1
from domain.gtin import gtin_check_digit_ok, normalise_gtin

# Published examples with correct check digits: GS1 GTIN-14, EAN-13 (two), EAN-8, UPC-A.
KNOWN_VALID = ["09501101020917", "4006381333931", "5901234123457", "96385074", "036000291452"]


@pytest.mark.parametrize("gtin", KNOWN_VALID)
def test_published_gtins_have_valid_check_digits(gtin: str) -> None:
    assert gtin_check_digit_ok(gtin)


@pytest.mark.parametrize("gtin", KNOWN_VALID)
def test_changing_the_check_digit_of_a_valid_gtin_makes_it_invalid(gtin: str) -> None:
    for d in "0123456789":
        if d != gtin[-1]:
            assert not gtin_check_digit_ok(gtin[:-1] + d)


@pytest.mark.parametrize("bad", ["", "1234567", "123456789", "0950110102091", "0950110102091A",
                                 "095011010209170", " 9501101020917", "-9501101020917"])
def test_gtins_of_wrong_length_or_with_non_digits_are_invalid(bad: str) -> None:
    assert not gtin_check_digit_ok(bad)


@given(st.text(alphabet="0123456789", min_size=13, max_size=13))
def test_exactly_one_check_digit_completes_any_gtin14_body(body: str) -> None:
    valid = [d for d in "0123456789" if gtin_check_digit_ok(body + d)]
    assert len(valid) == 1


@given(st.text(alphabet="0123456789", min_size=12, max_size=12))
def test_leading_zero_padding_keeps_a_gtin_valid_and_normalises_to_14_digits(body: str) -> None:
    gtin13 = next(body + d for d in "0123456789" if gtin_check_digit_ok(body + d))
    assert gtin_check_digit_ok("0" + gtin13)
    assert normalise_gtin(gtin13) == "0" + gtin13
    assert len(normalise_gtin("96385074")) == 14


@given(st.text(alphabet="0123456789", min_size=13, max_size=13), st.integers(0, 12))
def test_a_single_digit_typo_in_a_gtin_is_always_detected(body: str, pos: int) -> None:
    gtin = next(body + d for d in "0123456789" if gtin_check_digit_ok(body + d))
    for d in "0123456789":
        if d != gtin[pos]:
            assert not gtin_check_digit_ok(gtin[:pos] + d + gtin[pos + 1:])


# -- GS1 element strings --------------------------------------------------------------

@pytest.mark.parametrize("barcode", [
    "]d2010950110102091717270531" + "10LOT-7",            # DataMatrix symbology id, lot last
    "010950110102091717270531" + "10LOT-7",               # no symbology identifier
    "0109501101020917" + "10LOT-7\x1d" + "17270531",      # lot first, GS separator
    "]C10109501101020917" + "10LOT-7<GS>" + "17270531",   # GS1-128, spelled <GS>
    "0109501101020917" + "10LOT-7{GS}" + "17270531",
    "https://id.gs1.org/01/09501101020917/10/LOT-7?17=270531",  # GS1 Digital Link
])
def test_gs1_barcode_forms_give_gtin_lot_and_expiry(barcode: str) -> None:
    fields, reason = parse_gs1(barcode)
    assert reason is None
    assert fields == {"gtin": "09501101020917", "lot": "LOT-7", "expiry": "2027-05-31"}


def test_gs1_serial_number_is_read_from_ai_21() -> None:
    fields, _ = parse_gs1("0109501101020917" + "21SN0042\x1d" + "10L9")
    assert fields == {"gtin": "09501101020917", "serial": "SN0042", "lot": "L9"}


@pytest.mark.parametrize(("yymmdd", "expected"), [
    ("260200", "2026-02-28"),   # day 00: last day of the month
    ("240200", "2024-02-29"),   # ... leap year
    ("261200", "2026-12-31"),
    ("260400", "2026-04-30"),
    ("260215", "2026-02-15"),   # an ordinary day is kept
])
def test_gs1_expiry_day_00_means_the_last_day_of_that_month(yymmdd: str, expected: str) -> None:
    fields, _ = parse_gs1("0109501101020917" + "17" + yymmdd + "10ABC")
    assert fields is not None
    assert fields["expiry"] == expected


def test_gs1_digital_link_expiry_day_00_is_the_last_day_of_the_month() -> None:
    fields, _ = parse_gs1("https://id.gs1.org/01/09501101020917/10/ABC1/21/S9?17=261100")
    assert fields == {"gtin": "09501101020917", "lot": "ABC1", "serial": "S9",
                      "expiry": "2026-11-30"}


@pytest.mark.parametrize("barcode", ["hello", "", "10ABC", "1726020010ABC"])
def test_a_barcode_without_a_gtin_is_refused_with_a_reason(barcode: str) -> None:
    fields, reason = parse_gs1(barcode)
    assert fields is None
    assert reason and "GTIN" in reason


def test_a_gs1_barcode_keeps_a_bad_check_digit_for_validation_to_refuse() -> None:
    fields, _ = parse_gs1("0109501101020918" + "10X")
    assert fields is not None and fields["gtin"] == "09501101020918"
    assert not gtin_check_digit_ok(fields["gtin"])


def test_the_human_readable_form_parses_and_one_with_stray_parentheses_is_refused() -> None:
    """``(01)…(17)…(10)…`` as printed under a symbol gives what the element string gives; a
    lot that itself holds parentheses cannot be told from AIs there (biip skips what is not an
    AI, which would record the lot cut short): refused with the way out."""
    from domain.barcodes import parse_gs1

    assert parse_gs1("(01)09501101020917(17)271231(10)LOT-7")[0] == \
        parse_gs1("0109501101020917172712311" + "0LOT-7")[0] == \
        {"gtin": "09501101020917", "expiry": "2027-12-31", "lot": "LOT-7"}
    found, why = parse_gs1("(01)09501101020917(10)A(B)C")
    assert found is None and why is not None and "without them" in why

"""GS1 GTIN check digits (GS1 General Specifications, section 7.9.1)."""


def gtin_check_digit_ok(gtin: str) -> bool:
    """True when ``gtin`` is 8, 12, 13 or 14 digits whose last digit is the GS1 mod-10 check.

    >>> gtin_check_digit_ok("09501101020917")
    True
    >>> gtin_check_digit_ok("09501101020918")
    False
    """
    if len(gtin) not in (8, 12, 13, 14) or not gtin.isdigit():
        return False
    digits = [int(c) for c in gtin]
    body, check = digits[:-1], digits[-1]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == check


def check_digit(body: str) -> str:
    """The GS1 mod-10 check digit of a GTIN, GLN or SSCC without its last digit.

    >>> check_digit("0950110102091")
    '7'
    """
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def normalise_gtin(gtin: str) -> str:
    """The 14-digit form (GTIN-14), left-padded with zeros, so that GTIN-8/12/13 match."""
    return gtin.zfill(14)

"""CPR numbers: validation and the subject pseudonym.

A CPR number is never stored in clear or logged; only its pseudonym
(HMAC-SHA256 under a deployment secret) leaves the sending authority's payload.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import date


class InvalidCPR(ValueError):
    """Deliberately never includes the number itself in its message."""


def century(seventh_digit: int, yy: int) -> int:
    # Statutory table (CPR-kontoret): the 7th digit and the year fix the century.
    if seventh_digit <= 3:
        return 1900
    if seventh_digit in (4, 9):
        return 2000 if yy <= 36 else 1900
    return 2000 if yy <= 57 else 1800


def birth_date(cpr: str) -> date:
    digits = cpr.replace("-", "")
    if len(digits) != 10 or not digits.isdigit():
        raise InvalidCPR("CPR number must be 10 digits (DDMMYY-SSSS)")
    dd, mm, yy = int(digits[0:2]), int(digits[2:4]), int(digits[4:6])
    try:
        return date(century(int(digits[6]), yy) + yy, mm, dd)
    except ValueError:
        raise InvalidCPR("CPR number does not start with a real date (DDMMYY)") from None


def normalise(cpr: str) -> str:
    birth_date(cpr)
    return cpr.replace("-", "")


def pseudonym(cpr: str, secret: bytes) -> str:
    return hmac.new(secret, normalise(cpr).encode("ascii"), hashlib.sha256).hexdigest()


def age_on(cpr: str, day: date) -> int:
    born = birth_date(cpr)
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))

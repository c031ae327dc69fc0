"""CPR numbers: validation, the subject pseudonym and the senders' ordering key.

A CPR number is never stored in clear or logged. Only the gate, the relay and the
review side hold the pseudonym secret; the gate derives the pseudonym (HMAC-SHA256
under that secret) from the payload's CPR number. Senders hold no secret: they key
their Kafka records with ``ordering_key``, a coarse public bucket of the CPR number.
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


def _digits(cpr: str) -> str:
    # The one normal form: pseudonyms depend on it, and one citizen must have one pseudonym.
    return cpr.replace("-", "")


def _ten_digits(cpr: str) -> str:
    digits = _digits(cpr)
    # ASCII only: str.isdigit() also takes '²' and Arabic-Indic digits, which int() then refuses
    # with a message quoting the number, or the pseudonym's ASCII encoding refuses.
    if len(digits) != 10 or not (digits.isascii() and digits.isdigit()):
        raise InvalidCPR("CPR number must be 10 digits (DDMMYY-SSSS)")
    return digits


def birth_date(cpr: str) -> date:
    digits = _ten_digits(cpr)
    dd, mm, yy = int(digits[0:2]), int(digits[2:4]), int(digits[4:6])
    try:
        return date(century(int(digits[6]), yy) + yy, mm, dd)
    except ValueError:
        raise InvalidCPR("CPR number does not start with a real date (DDMMYY)") from None


def normalise(cpr: str) -> str:
    birth_date(cpr)
    return _digits(cpr)


def pseudonym(cpr: str, secret: bytes) -> str:
    return _hmac(normalise(cpr), secret)


def pseudonym_of_valid(cpr: str, secret: bytes) -> str:
    """``pseudonym`` of a CPR number that has been validated already (schemas.validation's Cpr): for
    the gate, whose payload validation has just checked it, without parsing its date again (~2 µs).
    The same normal form as ``normalise``; the digits are still checked (InvalidCPR otherwise)."""
    return _hmac(_ten_digits(cpr), secret)


def _hmac(digits: str, secret: bytes) -> str:
    return hmac.new(secret, digits.encode("ascii"), hashlib.sha256).hexdigest()


def age_on(cpr: str, day: date) -> int:
    born = birth_date(cpr)
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


# The subject of a request about no person (a payload without a CPR number, such as
# AggregateStatistics): the ledger seals it under this subject, no subject register lists
# it, and it cannot be erased. HMAC-SHA256 output is never all zeros in practice.
NO_SUBJECT = "0" * 64

ORDERING_KEY_LABEL = b"xledger-order-v1|"
ORDERING_KEY_BITS = 16


def ordering_key(cpr: str) -> str:
    """The Kafka key a sender gives a request about this person: 4 hex digits.

    The first 16 bits of SHA-256("xledger-order-v1|" + the 10 digits). The same person always
    gets the same key, so the murmur2 partitioner keeps their requests in one partition, in
    order; 65,536 buckets shared by ~6 million living CPR numbers put ~90 people in each, so
    the key tells a broker reader almost nothing. No secret is involved.
    """
    digest = hashlib.sha256(ORDERING_KEY_LABEL + normalise(cpr).encode("ascii")).digest()
    return digest[: ORDERING_KEY_BITS // 8].hex()

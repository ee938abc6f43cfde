"""NIP (Nomor Induk Pegawai) validation, part by part.

PNS, 18 digits:  birth date YYYYMMDD | appointment YYYYMM | sex 1/2 | sequence NNN
PPPK, 18 digits: birth date YYYYMMDD | first appointment YYYY | contract NN | sex 1/2 | sequence NNN

Digit positions in messages are 1-based, as a person counts them on an ID card.

Shared by the settings (BOOTSTRAP_ADMIN_NIPS), authentication and the organisation,
so it depends on nothing of theirs (docs/RULES.md#nip).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Literal

Employment = Literal["pns", "pppk"]
NIP_LENGTH = 18

# Birth and appointment dates are calendar dates of the regency, so "the future"
# is judged by the date in WIB (UTC+7, no daylight saving), not by the UTC date.
WIB = timezone(timedelta(hours=7), "WIB")


class NipError(ValueError):
    """A NIP that is wrong; the message says which part."""


@dataclass(frozen=True)
class Nip:
    value: str
    employment: Employment
    birth_date: date
    appointment_year: int
    appointment_month: int | None
    sex: int
    sequence: int


def could_be_nip(value: str) -> bool:
    """Every stored NIP is 18 ASCII digits; anything else names no employee and is not
    sent to the database (PostgreSQL rejects some strings, e.g. with a NUL, outright)."""
    return len(value) == NIP_LENGTH and value.isascii() and value.isdigit()


def regency_today() -> date:
    return datetime.now(WIB).date()


def _birth_date(nip: str, today: date) -> date:
    try:
        born = date(int(nip[0:4]), int(nip[4:6]), int(nip[6:8]))
    except ValueError:
        raise NipError(
            f"digits 1-8 (birth date YYYYMMDD) {nip[0:8]} are not a real calendar date"
        ) from None
    if born.year < 1900:
        raise NipError(f"digits 1-8 (birth date YYYYMMDD) {nip[0:8]} are before 1900")
    if born > today:
        raise NipError(f"digits 1-8 (birth date YYYYMMDD) {nip[0:8]} are in the future")
    return born


def _sex_and_sequence(nip: str) -> tuple[int, int]:
    sex = int(nip[14])
    if sex not in (1, 2):
        raise NipError(f"digit 15 (sex) must be 1 or 2, not {nip[14]}")
    sequence = int(nip[15:18])
    if sequence == 0:
        raise NipError("digits 16-18 (sequence number) must not be 000")
    return sex, sequence


def parse_nip(nip: str, employment: Employment = "pns", *, today: date | None = None) -> Nip:
    """Check every part of `nip` for the given employment; raise `NipError` naming the part.

    `today` (default: the regency's date now) is the limit for birth and appointment.
    """
    today = today or regency_today()
    if len(nip) != NIP_LENGTH:
        raise NipError(f"must be exactly {NIP_LENGTH} digits, not {len(nip)} characters")
    if not (nip.isascii() and nip.isdigit()):
        raise NipError("must contain only the digits 0-9")
    born = _birth_date(nip, today)
    if employment == "pns":
        year, month = int(nip[8:12]), int(nip[12:14])
        if not 1 <= month <= 12:
            raise NipError(f"digits 9-14 (appointment YYYYMM) {nip[8:14]} do not name a real month")
        if (year, month) < (born.year, born.month):
            raise NipError(
                f"digits 9-14 (appointment YYYYMM) {nip[8:14]} precede the birth date {nip[0:8]}"
            )
        if (year, month) > (today.year, today.month):
            raise NipError(f"digits 9-14 (appointment YYYYMM) {nip[8:14]} are in the future")
        sex, sequence = _sex_and_sequence(nip)
        return Nip(nip, "pns", born, year, month, sex, sequence)
    year = int(nip[8:12])
    if year < born.year:
        raise NipError(
            f"digits 9-12 (year of first appointment) {nip[8:12]} "
            f"precede the birth year {born.year}"
        )
    if year > today.year:
        raise NipError(f"digits 9-12 (year of first appointment) {nip[8:12]} are in the future")
    if nip[12:14] == "00":
        raise NipError("digits 13-14 (contract number) must not be 00")
    sex, sequence = _sex_and_sequence(nip)
    return Nip(nip, "pppk", born, year, None, sex, sequence)


def infer_employment(nip: str) -> Employment:
    """The employment whose format `nip` fits, trying PNS first; `NipError` (naming the
    PNS reading's fault) when it fits neither."""
    employment, fault = _inferred(nip, regency_today())
    if employment is None:
        raise NipError(fault)
    return employment


@functools.lru_cache(maxsize=4096)
def _inferred(nip: str, today: date) -> tuple[Employment | None, str]:
    """`infer_employment` on the day `today`: a pure function of its arguments, so the
    answers the check's query validation asks for again and again are remembered (the
    day is part of the key: a NIP's dates are judged against it)."""
    try:
        return parse_nip(nip, "pns", today=today).employment, ""
    except NipError as pns_error:
        try:
            return parse_nip(nip, "pppk", today=today).employment, ""
        except NipError:
            return None, str(pns_error)

"""NIP validation (docs/RULES.md#nip): every part is checked, and the message names the wrong part.

The pure tests call `app.nip` directly (no HTTP, no database) and pin
"today" so the limits of birth and appointment are tested at their edges. The
HTTP tests prove a bad NIP reaches the client as a 422 `invalid_nip` naming the
part, checked against the employment the admin stated.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import httpx
import pytest

from app.nip import NipError, infer_employment, parse_nip, regency_today
from tests.support import Org, assert_problem, make_nip

pytestmark = pytest.mark.anyio

PNS = "198503102010011001"  # born 1985-03-10, appointed 2010-01, male, no. 001
PPPK = "199509202023011004"  # born 1995-09-20, first appointed 2023, contract 01, male, no. 004
PPPK_ONLY = "199509202023991004"  # contract 99 cannot be a PNS appointment month
TODAY = date(2025, 10, 14)  # the date of SE 47/2025, as "today" for the edge cases


# --- valid numbers ------------------------------------------------------------------


def test_a_valid_pns_nip_parses_into_its_parts() -> None:
    nip = parse_nip(PNS, "pns")
    assert nip.value == PNS
    assert nip.employment == "pns"
    assert nip.birth_date == date(1985, 3, 10)
    assert (nip.appointment_year, nip.appointment_month) == (2010, 1)
    assert (nip.sex, nip.sequence) == (1, 1)


def test_pns_is_the_default_layout() -> None:
    assert parse_nip(PNS).employment == "pns"


def test_a_valid_pppk_number_parses_into_its_parts() -> None:
    nip = parse_nip(PPPK, "pppk")
    assert nip.employment == "pppk"
    assert nip.birth_date == date(1995, 9, 20)
    assert (nip.appointment_year, nip.appointment_month) == (2023, None)
    assert (nip.sex, nip.sequence) == (1, 4)


@pytest.mark.parametrize(
    "nip",
    [
        "198402292010012999",  # born on a leap day; female; highest sequence
        "190001012010011001",  # born on the first day accepted
        "198503101985031001",  # appointed in the month of birth: not before it
        "198503102025101001",  # appointed in the current month
        "202510142025101001",  # born today, appointed this month
    ],
)
def test_pns_edges_that_are_valid(nip: str) -> None:
    parse_nip(nip, "pns", today=TODAY)


@pytest.mark.parametrize(
    "nip",
    [
        "199509201995012001",  # first appointed in the year of birth
        "199509202025991999",  # this year, contract 99, female, sequence 999
    ],
)
def test_pppk_edges_that_are_valid(nip: str) -> None:
    parse_nip(nip, "pppk", today=TODAY)


# --- each wrong part is named -------------------------------------------------------


@pytest.mark.parametrize(
    ("nip", "employment", "names"),
    [
        ("", "pns", "exactly 18 digits, not 0"),
        ("19850310201001100", "pns", "exactly 18 digits, not 17"),
        ("1985031020100110011", "pns", "exactly 18 digits, not 19"),
        ("19850310201001100", "pppk", "exactly 18 digits"),
        ("19850310201001100x", "pns", "only the digits 0-9"),
        ("1985031020100110 1", "pns", "only the digits 0-9"),
        ("-98503102010011001", "pns", "only the digits 0-9"),
        ("\uff11" * 18, "pns", "only the digits 0-9"),  # full-width digits are not ASCII
        ("١٩٨٥٠٣١٠٢٠١٠٠١١٠٠١", "pns", "only the digits 0-9"),  # Arabic-Indic digits
        ("198502302010011001", "pns", "birth date YYYYMMDD) 19850230 are not a real calendar"),
        ("198502292010011001", "pns", "birth date YYYYMMDD) 19850229 are not a real calendar"),
        ("198513102010011001", "pns", "birth date YYYYMMDD) 19851310 are not a real calendar"),
        ("198503002010011001", "pns", "birth date YYYYMMDD) 19850300 are not a real calendar"),
        ("189912312010011001", "pns", "birth date YYYYMMDD) 18991231 are before 1900"),
        ("202510152025101001", "pns", "birth date YYYYMMDD) 20251015 are in the future"),
        ("198503102010131001", "pns", "appointment YYYYMM) 201013 do not name a real month"),
        ("198503102010001001", "pns", "appointment YYYYMM) 201000 do not name a real month"),
        ("198503101985021001", "pns", "appointment YYYYMM) 198502 precede the birth date"),
        ("198503101984121001", "pns", "appointment YYYYMM) 198412 precede the birth date"),
        ("198503102025111001", "pns", "appointment YYYYMM) 202511 are in the future"),
        ("198503102026011001", "pns", "appointment YYYYMM) 202601 are in the future"),
        ("198503102010013001", "pns", "digit 15 (sex) must be 1 or 2, not 3"),
        ("198503102010010001", "pns", "digit 15 (sex) must be 1 or 2, not 0"),
        ("198503102010011000", "pns", "digits 16-18 (sequence number) must not be 000"),
        ("199502302023011004", "pppk", "birth date YYYYMMDD) 19950230 are not a real calendar"),
        ("202510152025011004", "pppk", "birth date YYYYMMDD) 20251015 are in the future"),
        ("199509201994011004", "pppk", "year of first appointment) 1994 precede the birth year"),
        ("199509202026011004", "pppk", "year of first appointment) 2026 are in the future"),
        ("199509202023001004", "pppk", "digits 13-14 (contract number) must not be 00"),
        ("199509202023013004", "pppk", "digit 15 (sex) must be 1 or 2, not 3"),
        ("199509202023011000", "pppk", "digits 16-18 (sequence number) must not be 000"),
    ],
)
def test_each_wrong_part_is_named(nip: str, employment: str, names: str) -> None:
    with pytest.raises(NipError) as raised:
        parse_nip(nip, employment, today=TODAY)  # type: ignore[arg-type]
    assert names in str(raised.value)


def test_the_first_wrong_part_is_the_one_named() -> None:
    """Parts are checked left to right, so a person fixes them in reading order."""
    with pytest.raises(NipError, match="birth date"):
        parse_nip("198502302010133000", "pns", today=TODAY)
    with pytest.raises(NipError, match="appointment"):
        parse_nip("198503102010133000", "pns", today=TODAY)
    with pytest.raises(NipError, match="sex"):
        parse_nip("198503102010013000", "pns", today=TODAY)


def test_the_future_is_judged_by_the_regency_date() -> None:
    """Appointed in November: refused on 31 October, accepted from 1 November (WIB)."""
    nip = "198503102025111001"
    with pytest.raises(NipError, match="in the future"):
        parse_nip(nip, "pns", today=date(2025, 10, 31))
    assert parse_nip(nip, "pns", today=date(2025, 11, 1)).appointment_month == 11
    wib_now = datetime.now(timezone(timedelta(hours=7)))
    assert regency_today() == wib_now.date() or regency_today() == wib_now.date() + timedelta(
        days=1
    )  # the clock may tick past midnight between the two reads
    this_month = f"19850310{wib_now:%Y%m}1001"
    parse_nip(this_month, "pns")  # appointed this month (WIB) is never "the future"


# --- inferring the employment -------------------------------------------------------


def test_infer_employment_prefers_pns_and_falls_back_to_pppk() -> None:
    assert infer_employment(PNS) == "pns"
    assert infer_employment(PPPK) == "pns"  # fits both layouts: PNS is tried first
    assert infer_employment(PPPK_ONLY) == "pppk"


def test_infer_employment_reports_the_pns_error_when_no_layout_fits() -> None:
    with pytest.raises(NipError, match="birth date"):
        infer_employment("198502302010011001")
    with pytest.raises(NipError, match="appointment YYYYMM"):
        infer_employment("198503102010001001")  # month 00 is also PPPK contract 00
    with pytest.raises(NipError, match="18 digits"):
        infer_employment("123")


# --- over HTTP ----------------------------------------------------------------------


async def _register(client: httpx.AsyncClient, org: Org, **body: str) -> httpx.Response:
    return await client.post("/api/v1/employees", json={"name": "X", **body}, headers=org.admin)


@pytest.mark.parametrize(
    ("nip", "names"),
    [
        ("19850310201001100", "18 digits"),
        ("19850310201001100x", "digits 0-9"),
        ("198513102010011001", "birth date"),
        ("198502302010011001", "birth date"),
        ("198503102010131001", "appointment"),
        ("198503101984121001", "precede the birth date"),
        ("198503102010013001", "sex"),
        ("198503102010011000", "sequence"),
    ],
)
async def test_api_refuses_a_bad_nip_naming_the_part(
    client: httpx.AsyncClient, org: Org, nip: str, names: str
) -> None:
    body = assert_problem(await _register(client, org, nip=nip), 422, "invalid_nip")
    assert names in body["detail"]
    assert len(body["errors"]) == 1
    error = body["errors"][0]
    assert error["loc"] == ["body", "nip"]
    assert error["code"] == "invalid_nip"
    assert names in error["msg"]
    assert (await client.get(f"/api/v1/employees/{nip}", headers=org.admin)).status_code == 404


async def test_api_refuses_a_nip_in_the_future(client: httpx.AsyncClient, org: Org) -> None:
    next_year = regency_today().year + 1
    body = assert_problem(
        await _register(client, org, nip=f"19850310{next_year}011001"),
        422,
        "invalid_nip",
    )
    assert "in the future" in body["errors"][0]["msg"]


async def test_a_pppk_number_sent_as_pns_is_refused(client: httpx.AsyncClient, org: Org) -> None:
    as_pns = assert_problem(
        await _register(client, org, nip=PPPK_ONLY, employment="pns"), 422, "invalid_nip"
    )
    assert "NIP" in as_pns["detail"]
    assert "appointment YYYYMM" in as_pns["errors"][0]["msg"]
    # The default employment is pns, so leaving it out is the same mistake.
    assert_problem(await _register(client, org, nip=PPPK_ONLY), 422, "invalid_nip")
    as_pppk = await _register(client, org, nip=PPPK_ONLY, employment="pppk")
    assert as_pppk.status_code == 201, as_pppk.text
    assert as_pppk.json()["employment"] == "pppk"


async def test_a_number_broken_as_pppk_is_refused_when_sent_as_pppk(
    client: httpx.AsyncClient, org: Org
) -> None:
    """The stated layout decides what is checked: PPPK rules name PPPK parts.

    (Every valid PNS NIP also fits the PPPK layout, so "valid PNS, invalid PPPK"
    cannot exist; the PPPK-only rules are what an admin can trip over.)
    """
    before_birth = assert_problem(
        await _register(client, org, nip="199509201994011004", employment="pppk"),
        422,
        "invalid_nip",
    )
    assert "NI PPPK" in before_birth["detail"]
    assert "year of first appointment" in before_birth["errors"][0]["msg"]
    no_contract = assert_problem(
        await _register(client, org, nip="199509202023001004", employment="pppk"),
        422,
        "invalid_nip",
    )
    assert "contract number" in no_contract["errors"][0]["msg"]


async def test_changing_the_employment_rechecks_the_nip(
    client: httpx.AsyncClient, org: Org
) -> None:
    pppk = await _register(client, org, nip=PPPK_ONLY, employment="pppk")
    assert pppk.status_code == 201
    to_pns = await client.patch(
        f"/api/v1/employees/{PPPK_ONLY}", json={"employment": "pns"}, headers=org.admin
    )
    assert "appointment" in assert_problem(to_pns, 422, "invalid_nip")["errors"][0]["msg"]
    unchanged = await client.get(f"/api/v1/employees/{PPPK_ONLY}", headers=org.admin)
    assert unchanged.json()["employment"] == "pppk"
    pns = await org.employee()
    to_pppk = await client.patch(
        f"/api/v1/employees/{pns['nip']}", json={"employment": "pppk"}, headers=org.admin
    )
    assert to_pppk.status_code == 200
    assert to_pppk.json()["employment"] == "pppk"


async def test_a_valid_nip_of_each_layout_is_registered(
    client: httpx.AsyncClient, org: Org
) -> None:
    for employment in ("pns", "pppk"):
        nip = make_nip(employment=employment, sex=2)
        response = await _register(client, org, nip=nip, employment=employment)
        assert response.status_code == 201, response.text
        assert (response.json()["nip"], response.json()["employment"]) == (nip, employment)

"""SE Bupati Kepulauan Anambas No. 47/2025 as data, and the submission rules as pure functions.

Each rule names the clause of the SE it enforces. `GET /api/v1/policy`
publishes this table; the 422 problems quote it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from app.errors import InvalidInput, field_error

SE_TITLE = "Surat Edaran Bupati Kepulauan Anambas Nomor 47 Tahun 2025 (14 Oktober 2025)"
SUBMISSION_GRACE = timedelta(minutes=5)


@dataclass(frozen=True)
class Clause:
    number: int
    text_id: str
    text_en: str

    @property
    def citation(self) -> str:
        return f"SE Bupati Kepulauan Anambas No. 47/2025, angka {self.number}"


CLAUSES = {
    1: Clause(
        1,
        "ASN dilarang bersiaran langsung untuk keperluan pribadi selama jam kerja "
        "maupun di lingkungan kantor.",
        "No live streaming for personal purposes during working hours or at the workplace.",
    ),
    2: Clause(
        2,
        "Seragam dan atribut kedinasan tidak boleh tampil dalam konten yang tidak patut "
        "atau untuk kepentingan komersial pribadi.",
        "No uniforms or official attributes in improper or personal commercial content.",
    ),
    3: Clause(
        3,
        "Dokumen, surat, dan data elektronik yang bersifat rahasia instansi tidak boleh "
        "diperlihatkan atau dibicarakan.",
        "No showing or discussing confidential documents, letters or electronic data.",
    ),
    4: Clause(
        4,
        "Siaran langsung dari ruang kerja administratif atau tempat kegiatan rutin "
        "lainnya harus seizin pimpinan unit.",
        "No live broadcast from an administrative or other routine workspace without "
        "the unit head's permission.",
    ),
    5: Clause(
        5,
        "Tidak menjelekkan rekan kerja, atasan, atau kebijakan internal, dan tidak "
        "membuat konten yang merendahkan ASN, unit kerja, atau Pemerintah Kabupaten.",
        "No disparaging colleagues, superiors or internal policy; no content demeaning "
        "ASN, the work unit or the regency government.",
    ),
    6: Clause(
        6,
        "Tidak menyebarkan konten bermuatan SARA, hoaks, atau hal negatif lainnya, "
        "dan menjaga netralitas politik.",
        "No ethnic, religious or racial hatred (SARA), hoaxes or other negative content; "
        "political neutrality.",
    ),
}

ATTESTATIONS = {
    "no_uniform_misuse": 2,
    "no_confidential_information": 3,
    "no_disparagement": 5,
    "no_demeaning_content": 5,
    "no_sara_hoax_or_negative_content": 6,
    "political_neutrality": 6,
}


@dataclass(frozen=True)
class Limits:
    max_duration: timedelta
    max_lead: timedelta


class PolicyViolation(InvalidInput):
    """A submission the SE forbids; `code` names the rule, `detail` cites the clause."""

    title = "Refused by SE 47/2025"


def _cite(number: int) -> str:
    return f"{CLAUSES[number].citation}: {CLAUSES[number].text_en}"


def check_purpose(purpose: str) -> None:
    if purpose == "personal":
        raise PolicyViolation(
            "A workspace is the work environment: personal streams are not permitted there "
            f"({_cite(1)})",
            code="personal_stream_forbidden",
            errors=[
                field_error(
                    ["body", "purpose"],
                    "personal streams are forbidden",
                    "personal_stream_forbidden",
                )
            ],
        )


def check_attestations(attestations: dict[str, bool | None]) -> None:
    missing = [name for name in ATTESTATIONS if attestations.get(name) is not True]
    if missing:
        clauses = sorted({ATTESTATIONS[name] for name in missing})
        cited = "; ".join(_cite(n) for n in clauses)
        raise PolicyViolation(
            f"Every attestation must be given as true; missing or false: {', '.join(missing)} "
            f"({cited})",
            code="attestation_required",
            errors=[
                field_error(["body", "attestations", name], "must be true", "attestation_required")
                for name in missing
            ],
        )


def check_window(starts_at: datetime, ends_at: datetime, *, now: datetime, limits: Limits) -> None:
    problem: tuple[str, str] | None = None
    if ends_at <= starts_at:
        problem = ("ends_at", "must be after starts_at")
    elif ends_at - starts_at > limits.max_duration:
        minutes = int(limits.max_duration.total_seconds() // 60)
        problem = ("ends_at", f"a broadcast may last at most {minutes} minutes")
    elif starts_at < now - SUBMISSION_GRACE:
        problem = ("starts_at", "is more than 5 minutes in the past")
    elif starts_at > now + limits.max_lead:
        problem = ("starts_at", f"is more than {limits.max_lead.days} days ahead")
    if problem is not None:
        field, message = problem
        raise PolicyViolation(
            f"Invalid broadcast window: {field} {message} ({_cite(4)})",
            code="invalid_window",
            errors=[field_error(["body", field], message, "invalid_window")],
        )


def unknown_workspace(code: str) -> PolicyViolation:
    return PolicyViolation(
        f"Workspace {code} does not exist; a permit is for a known workspace ({_cite(4)})",
        code="unknown_workspace",
        errors=[field_error(["body", "workspace_code"], "no such workspace", "unknown_workspace")],
    )


def workspace_inactive(code: str) -> PolicyViolation:
    return PolicyViolation(
        f"Workspace {code} is inactive; no permit can be asked for it ({_cite(4)})",
        code="workspace_inactive",
        errors=[field_error(["body", "workspace_code"], "inactive", "workspace_inactive")],
    )


def describe(limits: Limits) -> dict[str, object]:
    """The published policy: clauses, the submission rules, their limits."""
    return {
        "source": SE_TITLE,
        "clauses": [
            {"number": c.number, "citation": c.citation, "text_id": c.text_id, "text_en": c.text_en}
            for c in CLAUSES.values()
        ],
        "rules": [
            {
                "code": "personal_stream_forbidden",
                "rule": "purpose must not be `personal`",
                "clause": 1,
            },
            {
                "code": "attestation_required",
                "rule": "every attestation is given as true",
                "attestations": [
                    {"name": name, "clause": clause} for name, clause in ATTESTATIONS.items()
                ],
                "clause": [2, 3, 5, 6],
            },
            {
                "code": "invalid_window",
                "rule": "ends_at after starts_at; no longer than max_duration_minutes; "
                "starts_at no more than 5 minutes past and no more than max_lead_days ahead",
                "limits": {
                    "max_duration_minutes": int(limits.max_duration.total_seconds() // 60),
                    "max_lead_days": limits.max_lead.days,
                    "past_grace_minutes": int(SUBMISSION_GRACE.total_seconds() // 60),
                },
                "clause": 4,
            },
            {"code": "unknown_workspace", "rule": "the workspace exists", "clause": 4},
            {"code": "workspace_inactive", "rule": "the workspace is active", "clause": 4},
        ],
    }

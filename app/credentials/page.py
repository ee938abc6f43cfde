"""The `/verify` page (docs/RULES.md#verify-page): what a guard or a citizen sees after
scanning a permit's QR code. Bahasa Indonesia, readable on a phone, no script at all, under
a Content Security Policy that allows the page's one inline style (by its hash) and
nothing else; times in WIB. The verdict is `app.credentials.verifier`'s, like the API's."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

from jinja2 import Environment, PackageLoader, select_autoescape

from app.credentials.verifier import Reason, Verdict
from app.nip import WIB
from app.permits.vocabulary import CAPACITY_NAMES, PLATFORM_NAMES

STYLE = (
    "body{margin:0;font:17px/1.45 system-ui,sans-serif;color:#1b1b1b;background:#f4f4f1}"
    "main{max-width:34rem;margin:0 auto;padding:1rem}"
    ".service{font-size:.85rem;color:#555;margin:0 0 .75rem}"
    "h1{font-size:1.5rem;margin:0 0 .4rem}"
    ".verdict{border-radius:.6rem;padding:1rem;margin-bottom:1rem;color:#fff}"
    ".verdict p{margin:0}"
    ".valid{background:#176b33}.invalid{background:#a61b1b}.pending{background:#8a5a00}"
    "dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem .8rem;margin:0 0 1rem}"
    "dt{color:#555}dd{margin:0;font-weight:600;overflow-wrap:anywhere}"
    ".checked{font-size:.85rem;color:#555}"
    "form{margin-top:1.5rem;display:grid;gap:.4rem}"
    "textarea{font:inherit;font-size:.8rem;width:100%;box-sizing:border-box}"
    "button{font:inherit;padding:.6rem;border:0;border-radius:.4rem;background:#1b4f8a;color:#fff}"
)
POLICY = (
    "default-src 'none'; "
    f"style-src 'sha256-{base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()}'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
"""No script, image, font, frame or request of any kind: the page's one style block, by
its hash, and its form, sent back here."""

MONTHS = (
    "Januari", "Februari", "Maret", "April", "Mei", "Juni",
    "Juli", "Agustus", "September", "Oktober", "November", "Desember",
)  # fmt: skip
# (heading, explanation, tone); the explanation may name `{nbf}` or `{exp}`.
VERDICTS: dict[Reason, tuple[str, str, str]] = {
    "valid": (
        "SAH — izin berlaku",
        "Siaran langsung ini diizinkan pimpinan unit saat ini.",
        "valid",
    ),
    "revoked": (
        "TIDAK SAH — izin dicabut",
        "Izin ini sudah dicabut atau dibatalkan: siaran ini tidak lagi diizinkan.",
        "invalid",
    ),
    "not_yet_valid": ("BELUM BERLAKU", "Izin ini baru berlaku mulai {nbf}.", "pending"),
    "expired": ("TIDAK BERLAKU LAGI", "Masa izin ini sudah berakhir pada {exp}.", "invalid"),
    "bad_signature": (
        "TIDAK SAH — tanda tangan tidak cocok",
        "Kredensial ini tidak diterbitkan oleh layanan ini, atau isinya sudah diubah.",
        "invalid",
    ),
    "malformed": (
        "TIDAK DAPAT DIBACA",
        "Teks ini bukan kredensial izin siaran. Pindai ulang kode QR pada izin.",
        "invalid",
    ),
}  # fmt: skip

_templates = Environment(
    loader=PackageLoader("app.credentials"), autoescape=select_autoescape(default=True)
)


def wib(instant: datetime) -> str:
    """`12 Januari 2027 pukul 09.00 WIB`: the regency's time, as Indonesians write it."""
    local = instant.astimezone(WIB)
    return f"{local.day} {MONTHS[local.month - 1]} {local.year} pukul {local:%H.%M} WIB"


def _seconds(value: int) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def render(verdict: Verdict | None, now: datetime) -> str:
    """The page: the form alone when nothing was presented, else the verdict first."""
    context: dict[str, object] = {"style": STYLE, "verdict": verdict, "claims": None}
    if verdict is None:
        context["heading"] = "Verifikasi"
    else:
        heading, explanation, tone = VERDICTS[verdict.reason]
        claims = verdict.claims
        times = {"nbf": "", "exp": ""}
        if claims is not None:
            times = {"nbf": wib(_seconds(claims.nbf)), "exp": wib(_seconds(claims.exp))}
            context.update(
                claims=claims,
                platform=PLATFORM_NAMES.get(claims.platform, claims.platform),
                starts=times["nbf"],
                ends=times["exp"],
                decided=CAPACITY_NAMES.get(claims.decided_as or "", claims.decided_as or "—"),
            )
        context.update(
            heading=heading,
            explanation=explanation.format(**times),
            tone=tone,
            checked=wib(now),
        )
    return _templates.get_template("verify.html").render(context)

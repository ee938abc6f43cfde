"""`izin-siaran demo`: an example organisation of Pemkab Kepulauan Anambas.

Made-up people with valid NIPs, a few real-sounding units and workspaces, and
a Plh delegation, so that every endpoint can be tried at once. Running it again
adds only what is missing.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import SYSTEM_ACTOR
from app.config import Settings
from app.db import Database
from app.migrate import require_head
from app.org import service
from app.org.delegations import create_delegation
from app.org.models import Delegation, Employee, Unit, Workspace
from app.org.schemas import (
    DelegationCreate,
    EmployeeCreate,
    UnitCreate,
    UnitUpdate,
    WorkspaceCreate,
)
from app.timeutil import utcnow

UNITS = [
    # code, name, parent, head NIP
    ("SETDA", "Sekretariat Daerah Kabupaten Kepulauan Anambas", None, "197005121995031002"),
    (
        "DISKOMINFOTIK",
        "Dinas Komunikasi, Informatika dan Statistik",
        "SETDA",
        "197808172003121001",
    ),
    (
        "BKPSDM",
        "Badan Kepegawaian dan Pengembangan Sumber Daya Manusia",
        "SETDA",
        "197512302000121001",
    ),
    ("DISDIK", "Dinas Pendidikan", "SETDA", "197302141998032003"),
    ("KEC-SIANTAN", "Kecamatan Siantan", "SETDA", "198001152005011002"),
    ("INSPEKTORAT", "Inspektorat Daerah", "SETDA", "197109091997031004"),
]

EMPLOYEES = [
    # NIP, name, employment, unit, position, roles
    ("197005121995031002", "Drs. Hasan Basri, M.Si", "pns", "SETDA", "Sekretaris Daerah", []),
    ("197808172003121001", "Syahrial, S.Kom", "pns", "DISKOMINFOTIK", "Kepala Dinas", []),
    ("198311252008011003", "Rudi Hartono, S.T", "pns", "DISKOMINFOTIK", "Sekretaris Dinas", []),
    ("199204032019032005", "Nurul Aini, S.I.Kom", "pns", "DISKOMINFOTIK", "Pranata Humas", []),
    ("199509202023011004", "Fajar Ramadhan", "pppk", "DISKOMINFOTIK", "Operator Siaran", []),
    ("197512302000121001", "Hj. Rosmawati, S.H", "pns", "BKPSDM", "Kepala Badan", []),
    ("198904042014021003", "Agus Salim, S.Kom", "pns", "BKPSDM", "Pranata Komputer", ["admin"]),
    ("197302141998032003", "Dra. Siti Zubaidah", "pns", "DISDIK", "Kepala Dinas", []),
    ("198807072011012008", "Maya Sari, S.Pd", "pns", "DISDIK", "Guru", []),
    ("198001152005011002", "Zulkifli, S.STP", "pns", "KEC-SIANTAN", "Camat", []),
    ("199106182015031001", "Andi Pratama", "pns", "KEC-SIANTAN", "Staf Pelayanan", []),
    ("197109091997031004", "Ir. Bambang Sutrisno", "pns", "INSPEKTORAT", "Inspektur", ["auditor"]),
    ("198602282010122001", "Dewi Lestari, S.E", "pns", "INSPEKTORAT", "Auditor", ["auditor"]),
]

WORKSPACES = [
    ("DKI-STUDIO", "Studio Siaran Diskominfotik", "DISKOMINFOTIK", "studio"),
    ("DKI-ADM", "Ruang Administrasi Diskominfotik", "DISKOMINFOTIK", "administrative"),
    ("BKPSDM-ADM", "Ruang Administrasi BKPSDM", "BKPSDM", "administrative"),
    ("BKPSDM-RAPAT", "Ruang Rapat BKPSDM", "BKPSDM", "meeting"),
    ("DISDIK-ADM", "Ruang Administrasi Dinas Pendidikan", "DISDIK", "administrative"),
    ("DISDIK-AULA", "Aula Dinas Pendidikan", "DISDIK", "meeting"),
    ("SIANTAN-PELAYANAN", "Ruang Pelayanan Kantor Camat Siantan", "KEC-SIANTAN", "service"),
    ("SIANTAN-ADM", "Ruang Administrasi Kantor Camat Siantan", "KEC-SIANTAN", "administrative"),
    ("SETDA-RAPAT", "Ruang Rapat Sekretariat Daerah", "SETDA", "meeting"),
]

PLH_NIP = "198311252008011003"


async def _load(session: AsyncSession) -> list[str]:
    added: list[str] = []
    for code, name, parent, _head in UNITS:
        if await session.get(Unit, code) is None:
            body = UnitCreate(code=code, name=name, parent_code=parent)
            await service.create_unit(session, SYSTEM_ACTOR, body)
            added.append(f"unit {code}")
    for nip, name, employment, unit, position, roles in EMPLOYEES:
        if await session.get(Employee, nip) is None:
            body_e = EmployeeCreate.model_validate(
                {
                    "nip": nip,
                    "name": name,
                    "employment": employment,
                    "unit_code": unit,
                    "position": position,
                    "roles": roles,
                }
            )
            await service.create_employee(session, SYSTEM_ACTOR, body_e)
            added.append(f"employee {nip} ({position}, {unit})")
    for code, _name, _parent, head in UNITS:
        unit_row = await service.get_unit(session, code)
        if unit_row.head_nip is None:
            await service.update_unit(session, SYSTEM_ACTOR, code, UnitUpdate(head_nip=head))
    for code, name, unit, kind in WORKSPACES:
        if await session.get(Workspace, code) is None:
            body_w = WorkspaceCreate.model_validate(
                {"code": code, "name": name, "unit_code": unit, "kind": kind}
            )
            await service.create_workspace(session, SYSTEM_ACTOR, body_w)
            added.append(f"workspace {code}")
    if not await session.scalar(Delegation.__table__.select().limit(1)):
        head_of_dkt = await session.get(Employee, "197808172003121001")
        assert head_of_dkt is not None
        now = utcnow()
        plh = DelegationCreate(
            delegate_nip=PLH_NIP,
            kind="plh",
            starts_at=now,
            ends_at=now + timedelta(days=7),
            reason="Kepala Dinas bertugas ke luar daerah",
        )
        await create_delegation(session, head_of_dkt, "DISKOMINFOTIK", plh)
        added.append(f"Plh delegation of DISKOMINFOTIK to {PLH_NIP} for 7 days")
    return added


async def load_demo(settings: Settings) -> str:
    db = Database.connect(settings.effective_database_url, pool_size=1)
    try:
        await require_head(db.engine)
        async with db.write() as session, session.begin():
            added = await _load(session)
    finally:
        await db.dispose()
    lines = [f"added {item}" for item in added] or ["the demo organisation is already loaded"]
    lines += [
        "",
        "Try it (local mode):",
        "  admin:                  izin-siaran token 198904042014021003",
        "  head of DISKOMINFOTIK:  izin-siaran token 197808172003121001",
        "  Plh of DISKOMINFOTIK:   izin-siaran token 198311252008011003",
        "  staff (requester):      izin-siaran token 199204032019032005",
        "  auditor (Inspektorat):  izin-siaran token 198602282010122001",
    ]
    return "\n".join(lines)

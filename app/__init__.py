"""Izin Siaran: live-stream permits for ASN workspaces (SE Bupati Kepulauan Anambas 47/2025)."""

__version__ = "0.1.0"

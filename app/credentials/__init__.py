"""Signed permits (SPEC §9, docs/RULES.md#signed-permits): a credential anyone can verify
offline, its signing keys, the status lists that withdraw it, and its verification."""

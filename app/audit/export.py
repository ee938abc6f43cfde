"""What the CSV export writes into a cell (docs/RULES.md#csv-export)."""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralised(cell: object) -> object:
    """A text cell that a spreadsheet would read as a formula (it begins with `=`, `+`, `-`,
    `@`, a tab or a carriage return) gets a leading `'`, so it is shown, never run. Other
    values are written as they are."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell

"""Batch audit: every model under some folders -> report.json, report.csv, grids/ and index.html.

>>> from filtergrid.audit import AuditOptions, audit
>>> document = audit(AuditOptions(paths=("checkpoints/",), out=Path("audit-out"), workers=2))

See docs/audit-report.md for the report's schema.
"""

from __future__ import annotations

from .session import AuditOptions, Progress, audit

__all__ = ["AuditOptions", "Progress", "audit"]

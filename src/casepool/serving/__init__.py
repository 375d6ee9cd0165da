"""The web service (`casepool serve`): accounts, the JSON API, the table builder, steward pages."""

from __future__ import annotations

from casepool.serving.app import create_app

__all__ = ["create_app"]

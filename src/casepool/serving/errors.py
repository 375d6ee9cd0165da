"""Refusals a handler raises; the app turns them into a page or JSON that reveals nothing internal."""

from __future__ import annotations


class Refused(Exception):
    """The request is refused with an HTTP status and a message key (schemas/messages/serve.yaml)."""

    def __init__(self, status: int, key: str) -> None:
        super().__init__(key)
        self.status = status
        self.key = key

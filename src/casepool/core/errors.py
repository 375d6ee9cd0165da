"""The one exception root of casepool and its subclasses; bad data is a report, never one of these."""

from __future__ import annotations

from casepool.core.i18n import render


class CasepoolError(Exception):
    """Something stopped a command from running; the CLI prints one line and exits 2.

    `key` names a message in schemas/messages/ so the CLI can say it in the user's language;
    `params` fill its template. Never put a value from an identifier column in either.
    """

    def __init__(self, key: str, **params: object) -> None:
        self.key = key
        self.params = params
        super().__init__(self.message("en"))

    def message(self, lang: str) -> str:
        """The one-line message in `lang` (en, ar, ckb, kmr)."""

        return render(self.key, lang, **self.params)


class SchemaError(CasepoolError):
    """A file in schemas/ is missing, malformed or inconsistent."""


class UnreadableFileError(CasepoolError):
    """An input file is missing, empty, not a table, undecodable, or of an unsupported format."""


class MappingError(CasepoolError):
    """A mapping file cannot be read or names fields that do not exist."""


class KeyFileError(CasepoolError):
    """Organisation keys are missing, malformed, or would be overwritten."""


class PackageError(CasepoolError):
    """A package cannot be written or read."""


class WarehouseError(CasepoolError):
    """The warehouse cannot be opened, is locked by another process, or is inconsistent."""


class TableError(CasepoolError):
    """A table given for protection or audit is malformed."""


class UsageError(CasepoolError):
    """An option or argument is invalid."""

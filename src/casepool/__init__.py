"""casepool: pool de-identified case records into protected nationwide statistics."""

__version__ = "0.1.0"

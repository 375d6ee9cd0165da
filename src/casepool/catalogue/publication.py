"""The publication spec: which tables of the catalogue are published (schemas/publication.yaml)."""

from __future__ import annotations

from collections.abc import Mapping

from casepool.catalogue.indicators import (
    IndicatorCatalogue,
    TableRequest,
    check_request,
    load_indicators,
    population_key,
)
from casepool.core.errors import SchemaError, UsageError
from casepool.core.schema import read_yaml

PUBLICATION_FILE = "publication.yaml"


def load_publication(catalogue: IndicatorCatalogue | None = None) -> tuple[TableRequest, ...]:
    """The tables of schemas/publication.yaml, each checked against the indicators."""
    catalogue = catalogue or load_indicators()
    raw = read_yaml(PUBLICATION_FILE)
    if not isinstance(raw, Mapping) or not raw.get("tables"):
        raise SchemaError("schema-invalid", file=PUBLICATION_FILE, reason="needs tables")
    default_unit = str(raw.get("default_period_unit", "year"))
    requests: list[TableRequest] = []
    for spec in raw["tables"]:
        name = str(spec.get("name", ""))
        if not name.isidentifier() or name in {r.name for r in requests}:
            raise SchemaError(
                "schema-invalid", file=PUBLICATION_FILE, reason=f"table name {name!r}"
            )
        request = TableRequest(
            indicator=str(spec.get("indicator")),
            dimensions=tuple(str(d) for d in spec.get("dimensions") or ()),
            period_unit=str(spec.get("period_unit", default_unit)),
            name=name,
        )
        try:
            check_request(request, catalogue)
        except UsageError as exc:
            raise SchemaError(
                "schema-invalid", file=PUBLICATION_FILE, reason=f"{name}: {exc.message('en')}"
            ) from None
        requests.append(request)
    units: dict[str, tuple[str, str]] = {}
    for request in requests:
        if "period" not in request.dimensions:
            continue
        key = population_key(catalogue.indicator(request.indicator), catalogue)
        seen = units.setdefault(key, (request.period_unit, request.name))
        if seen[0] != request.period_unit:
            raise SchemaError(
                "schema-invalid",
                file=PUBLICATION_FILE,
                reason=f"{request.name} counts periods in {request.period_unit}s, {seen[1]} in {seen[0]}s",
            )
    return tuple(requests)

"""Indicators as data: load schemas/indicators.yaml, check it, and generate the SQL that counts them.

An indicator is a formula over the de-identified case fields: a numerator and, for a percentage, a
denominator, as conditions (see the header of indicators.yaml). Nothing here reads a warehouse;
`casepool.catalogue.tabulating` runs the SQL. Codes and field names are checked against the schema before
they reach SQL, and every literal is quoted, so the YAML cannot inject SQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from typing import Any

from casepool.core.errors import SchemaError, UsageError
from casepool.core.periods import Period, parse_period
from casepool.core.schema import LANGUAGES, CaseSchema, Code, load_schema, read_yaml
from casepool.core.vocabulary import KEY_SCALE, TOTAL

FILE = "indicators.yaml"
UNITS = ("count", "percent", "months", "rate")
# The dimensions a reference child population has (COD-PS layout): a rate may use only these.
RATE_DIMENSIONS = ("period", "governorate", "region", "sex", "age_band")
# `--where period=latest`: the latest year or quarter with registrations in the warehouse.
LATEST = "latest"
PERIOD_UNITS = ("year", "quarter")
MAX_DIMENSIONS = 4
# Package columns that are not case-record fields under their own name.
_COLUMN_OF_FIELD = {"survivor_age": "age_band"}
COLUMN_OF_FIELD = _COLUMN_OF_FIELD  # a case field -> its active_cases column
# The record key in [0, 1) as a 32-bit integer: sums of integers are exact in any order, so a
# cell's key (and its cell-key noise) is the same in every query, whatever the thread schedule.


def _labels(raw: Any, where: str) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        raise SchemaError("schema-invalid", file=FILE, reason=f"{where}: labels missing")
    labels = {lang: str(raw.get(lang, "")).strip() for lang in LANGUAGES}
    missing = [lang for lang, text in labels.items() if not text]
    if missing:
        raise SchemaError("schema-invalid", file=FILE, reason=f"{where}: labels missing {missing}")
    return labels


def sql_text(value: str) -> str:
    """A SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


@dataclass(frozen=True)
class Dimension:
    """A way to break a table down: a case field with its code list, or derived (period, region,
    or a `group` of another dimension's categories: wider age bands, displaced or not)."""

    name: str
    labels: dict[str, str]
    hxl: str
    codes: tuple[Code, ...] = ()
    column: str | None = None  # the active_cases column (a group's: its source's)
    derived: str | None = None  # period, region or group
    multi: bool = False
    missing: str | None = None  # the category holding empty and unlisted values
    sdmx: str = ""
    region_of: dict[str, str] = field(default_factory=dict)  # governorate -> region
    source: str | None = None  # the finer dimension a region or group is the sum of
    group_of: dict[str, str] = field(default_factory=dict)  # source code -> group code

    @property
    def rollup(self) -> tuple[str, tuple[tuple[str, str], ...]] | None:
        """The hierarchy an attacker knows, as (finer dimension, ((fine code, coarse code), ...)):
        each category of this dimension is the sum of its finer categories (a region of its
        governorates, 10-17 years of 10-14 and 15-17). None for a dimension of its own."""
        mapping = self.region_of if self.derived == "region" else self.group_of
        if self.source is None or not mapping:
            return None
        return self.source, tuple(sorted(mapping.items()))

    def label(self, lang: str) -> str:
        return self.labels.get(lang) or self.labels["en"]

    @property
    def code_values(self) -> tuple[str, ...]:
        return tuple(c.code for c in self.codes)

    def code_label(self, code: str, lang: str) -> str:
        """The label of a category (the total and periods are labelled by their code)."""
        if code == TOTAL:
            return {"en": "Total", "ar": "المجموع", "ckb": "کۆی گشتی", "kmr": "Giştî"}[
                lang if lang in LANGUAGES else "en"
            ]
        for c in self.codes:
            if c.code == code:
                return c.label(lang)
        return code

    @property
    def sdmx_name(self) -> str:
        return self.sdmx or self.name.upper()

    def expression(self, period_unit: str = "year") -> str:
        """The SQL expression of this dimension's category for one record (a list when multi)."""
        if self.derived == "period":
            if period_unit == "quarter":
                return "(CAST(year(report_date) AS VARCHAR) || '-Q' || CAST(quarter(report_date) AS VARCHAR))"
            return "CAST(year(report_date) AS VARCHAR)"
        if self.derived == "region":
            regions = sorted(set(self.region_of.values()))
            cases = " ".join(
                f"WHEN governorate IN ({', '.join(sql_text(g) for g, r in sorted(self.region_of.items()) if r == region)}) THEN {sql_text(region)}"
                for region in regions
            )
            fallback = sql_text(self.missing) if self.missing else "NULL"
            return f"(CASE {cases} ELSE {fallback} END)"
        if self.derived == "group":
            # Each group holds its source's categories; whatever falls in the source's "not
            # stated" category (empty, unlisted, a wider band) falls in the group's.
            cases = " ".join(
                f"WHEN {self.column} IN ({', '.join(sql_text(f) for f, g in sorted(self.group_of.items()) if g == group)}) THEN {sql_text(group)}"
                for group in self.code_values
                if group != self.missing
            )
            return f"(CASE {cases} ELSE {sql_text(self.missing or '')} END)"
        listed = ", ".join(sql_text(c) for c in self.code_values)
        if self.multi:
            return (
                f"list_sort(list_distinct(list_filter({self.column}, lambda x: x IN ({listed}))))"
            )
        fallback = sql_text(self.missing) if self.missing else "NULL"
        return f"(CASE WHEN {self.column} IN ({listed}) THEN {self.column} ELSE {fallback} END)"


@dataclass(frozen=True)
class Indicator:
    """One indicator: what it counts (numerator within denominator), its unit and dimensions."""

    name: str
    unit: str
    labels: dict[str, str]
    description: str
    dimensions: tuple[str, ...]
    numerator: Any = None  # condition; None for a count
    denominator: Any = None  # condition the counted records meet (besides population and scope)
    scope: Any = None  # condition restricting which records a count counts
    months_between: tuple[str, str] | None = None  # for a median of months
    per: int | None = None  # for a rate: children per this many children of the population

    def label(self, lang: str) -> str:
        return self.labels.get(lang) or self.labels["en"]

    @property
    def kind(self) -> str:
        """count, percent or median. A rate is counted and protected as a count; it becomes a
        rate only after protection (casepool.publishing.rates), from the protected count."""
        return {"count": "count", "percent": "percent", "months": "median", "rate": "count"}[
            self.unit
        ]


@dataclass(frozen=True, eq=False)
class IndicatorCatalogue:
    """Every indicator and dimension, and the population rule that counts each child once."""

    population: Any
    dimensions: dict[str, Dimension]
    indicators: dict[str, Indicator]
    schema: CaseSchema

    def indicator(self, name: str) -> Indicator:
        try:
            return self.indicators[name]
        except KeyError:
            raise UsageError(
                "indicator-unknown", indicator=str(name)[:60], known=", ".join(self.indicators)
            ) from None

    def dimension(self, name: str) -> Dimension:
        try:
            return self.dimensions[name]
        except KeyError:
            raise UsageError(
                "dimension-unknown", dimension=str(name)[:60], known=", ".join(self.dimensions)
            ) from None


def hierarchies(
    catalogue: IndicatorCatalogue,
) -> tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...]:
    """The hierarchies of derived dimensions an attacker knows, as the suppression engine takes
    them (CountTable.rollups): (coarse dimension, finer dimension, ((fine, coarse), ...)) for a
    region = Σ its governorates, an age group = Σ its age bands, displaced = Σ its groups."""
    return tuple(
        (name, *d.rollup) for name, d in catalogue.dimensions.items() if d.rollup is not None
    )


# --- loading and checking --------------------------------------------------------------------------


def _parse_dimension(
    name: str,
    raw: Mapping[str, Any],
    schema: CaseSchema,
    sources: Mapping[str, Dimension] | None = None,
) -> Dimension:
    where = f"dimensions.{name}"
    labels = _labels(raw.get("labels"), where)
    derived = raw.get("derived")
    if derived == "period":
        return Dimension(
            name, labels, str(raw.get("hxl", "")), derived="period", sdmx="TIME_PERIOD"
        )
    if derived == "region":
        codes = tuple(
            Code(str(c["code"]), _labels(c.get("labels"), f"{where}:{c['code']}"))
            for c in raw.get("codes") or ()
        )
        governorates = schema.codelists["governorate"]
        region_of = {g.code: g.attributes.get("region", "") for g in governorates.codes}
        unknown = {r for r in region_of.values()} - {c.code for c in codes}
        if unknown or not codes:
            raise SchemaError(
                "schema-invalid", file=FILE, reason=f"{where}: regions {sorted(unknown)} unlisted"
            )
        region_missing = raw.get("missing")
        if region_missing is not None:
            if region_missing not in {c.code for c in codes}:
                raise SchemaError(
                    "schema-invalid", file=FILE, reason=f"{where}: missing not a code"
                )
            # A governorate left blank (local suppression) lies in a region not stated, same code.
            region_of[str(region_missing)] = str(region_missing)
        return Dimension(
            name,
            labels,
            str(raw.get("hxl", "")),
            codes,
            derived="region",
            region_of=region_of,
            missing=None if region_missing is None else str(region_missing),
            source="governorate",
        )
    if derived == "group":
        return _parse_group(name, raw, where, labels, sources)
    if derived is not None:
        raise SchemaError("schema-invalid", file=FILE, reason=f"{where}: unknown derived {derived}")
    column = str(raw.get("field", ""))
    codelist = schema.codelists.get(str(raw.get("codelist")))
    if codelist is None:
        raise SchemaError("schema-invalid", file=FILE, reason=f"{where}: unknown code list")
    fields = {_COLUMN_OF_FIELD.get(f.name, f.name): f for f in schema.submitted_fields}
    if column not in fields:
        raise SchemaError("schema-invalid", file=FILE, reason=f"{where}: unknown field {column}")
    multi = bool(raw.get("multi", False))
    if multi != fields[column].multi:
        raise SchemaError("schema-invalid", file=FILE, reason=f"{where}: multi disagrees")
    missing = raw.get("missing")
    dimension_codes = codelist.codes
    if missing is not None and missing not in codelist.values:
        # A category for blanked values that exports may not use (e.g. a governorate not stated).
        if raw.get("missing_labels") is None:
            raise SchemaError("schema-invalid", file=FILE, reason=f"{where}: missing not a code")
        extra = Code(str(missing), _labels(raw["missing_labels"], f"{where}:missing"))
        dimension_codes = (*codelist.codes, extra)
    return Dimension(
        name,
        labels,
        str(raw.get("hxl", "")),
        dimension_codes,
        column=column,
        multi=multi,
        missing=None if missing is None else str(missing),
    )


def _parse_group(
    name: str,
    raw: Mapping[str, Any],
    where: str,
    labels: dict[str, str],
    sources: Mapping[str, Dimension] | None,
) -> Dimension:
    """A dimension grouping another one's categories (`derived: group`, `from: <dimension>`, each
    code listing the source codes it holds `of:`): every source code in exactly one group, the
    source's "not stated" category in the group's. The group is then the sum of its categories
    in every table, a hierarchy the engine and the audit state (Dimension.rollup)."""
    source = (sources or {}).get(str(raw.get("from")))
    if source is None or source.derived is not None or source.multi or not source.missing:
        raise SchemaError(
            "schema-invalid",
            file=FILE,
            reason=f"{where}: `from` must name an earlier single-valued field dimension with `missing`",
        )
    codes: list[Code] = []
    group_of: dict[str, str] = {}
    for c in raw.get("codes") or ():
        code = str(c.get("code", ""))
        codes.append(Code(code, _labels(c.get("labels"), f"{where}:{code}")))
        for fine in c.get("of") or ():
            if str(fine) in group_of:
                raise SchemaError(
                    "schema-invalid", file=FILE, reason=f"{where}: {fine} in two groups"
                )
            group_of[str(fine)] = code
    missing = raw.get("missing")
    unplaced = set(source.code_values) - set(group_of)
    if unplaced or set(group_of) - set(source.code_values):
        raise SchemaError(
            "schema-invalid",
            file=FILE,
            reason=f"{where}: every code of {source.name} in one group ({sorted(unplaced)} not)",
        )
    if missing is None or group_of.get(source.missing) != missing:
        raise SchemaError(
            "schema-invalid",
            file=FILE,
            reason=f"{where}: missing must be the group of {source.name}'s {source.missing}",
        )
    return Dimension(
        name,
        labels,
        str(raw.get("hxl", "")),
        tuple(codes),
        column=source.column,
        derived="group",
        missing=str(missing),
        source=source.name,
        group_of=group_of,
    )


def _check_condition(cond: Any, schema: CaseSchema, where: str) -> None:
    """Every field named exists and every code belongs to that field's code list."""
    if not isinstance(cond, Mapping) or not cond:
        raise SchemaError("schema-invalid", file=FILE, reason=f"{where}: a condition is a mapping")
    for key, value in cond.items():
        if key in {"all", "any"}:
            if not isinstance(value, list) or not value:
                raise SchemaError(
                    "schema-invalid", file=FILE, reason=f"{where}: {key} needs a list"
                )
            for part in value:
                _check_condition(part, schema, where)
        elif key == "not":
            _check_condition(value, schema, where)
        elif key in {"recorded", "known"}:
            _field_column(str(value), schema, where)
        else:
            f = _field_column(str(key), schema, where)
            codes = value if isinstance(value, list) else [value]
            allowed = schema.codelists[f.codelist].values if f.codelist else ()
            bad = [str(c) for c in codes if str(c) not in allowed]
            if bad or not codes:
                raise SchemaError(
                    "schema-invalid", file=FILE, reason=f"{where}: {key} has no code {bad}"
                )


def _field_column(name: str, schema: CaseSchema, where: str) -> Any:
    for f in schema.submitted_fields:
        if f.name == name and f.type != "identifier":
            return f
    raise SchemaError("schema-invalid", file=FILE, reason=f"{where}: unknown field {name}")


def _parse_indicator(
    raw: Mapping[str, Any], catalogue_dims: Mapping[str, Dimension], schema: CaseSchema
) -> Indicator:
    name = str(raw.get("name", ""))
    where = f"indicators.{name}"
    if not name.isidentifier():
        raise SchemaError("schema-invalid", file=FILE, reason=f"{where}: bad name")
    unit = str(raw.get("unit"))
    if unit not in UNITS:
        raise SchemaError("schema-invalid", file=FILE, reason=f"{where}: unit must be {UNITS}")
    dims = tuple(str(d) for d in raw.get("dimensions") or ())
    unknown = [d for d in dims if d not in catalogue_dims]
    if unknown:
        raise SchemaError("schema-invalid", file=FILE, reason=f"{where}: dimensions {unknown}")
    for key in ("numerator", "denominator", "scope"):
        if raw.get(key) is not None:
            _check_condition(raw[key], schema, f"{where}.{key}")
    if unit == "percent" and raw.get("numerator") is None:
        raise SchemaError(
            "schema-invalid", file=FILE, reason=f"{where}: a percent needs a numerator"
        )
    per = raw.get("per")
    if unit == "rate":
        if not isinstance(per, int) or isinstance(per, bool) or per <= 0:
            raise SchemaError("schema-invalid", file=FILE, reason=f"{where}: a rate needs per")
        # A group of a population column (age groups of age bands) sums its categories' children.
        outside = [
            d
            for d in dims
            if d not in RATE_DIMENSIONS
            and not (
                catalogue_dims[d].derived == "group" and catalogue_dims[d].source in RATE_DIMENSIONS
            )
        ]
        if outside:
            raise SchemaError(
                "schema-invalid", file=FILE, reason=f"{where}: no population by {outside}"
            )
    elif per is not None:
        raise SchemaError("schema-invalid", file=FILE, reason=f"{where}: only rates have per")
    if unit != "percent" and raw.get("numerator") is not None:
        raise SchemaError(
            "schema-invalid", file=FILE, reason=f"{where}: only percents have numerators"
        )
    months = raw.get("months_between")
    if unit == "months":
        if raw.get("statistic") != "median" or not isinstance(months, list) or len(months) != 2:
            raise SchemaError(
                "schema-invalid",
                file=FILE,
                reason=f"{where}: months need median and months_between",
            )
        for column in months:
            if _field_column(str(column), schema, where).type not in {"date", "month"}:
                raise SchemaError(
                    "schema-invalid", file=FILE, reason=f"{where}: {column} not a date"
                )
    return Indicator(
        name=name,
        unit=unit,
        labels=_labels(raw.get("labels"), where),
        description=str(raw.get("description", "")).strip(),
        dimensions=dims,
        numerator=raw.get("numerator"),
        denominator=raw.get("denominator"),
        scope=raw.get("scope"),
        months_between=(str(months[0]), str(months[1])) if isinstance(months, list) else None,
        per=per if unit == "rate" and isinstance(per, int) else None,
    )


@cache
def load_indicators() -> IndicatorCatalogue:
    """The indicators of schemas/indicators.yaml, checked against the case record and code lists."""
    raw = read_yaml(FILE)
    if not isinstance(raw, Mapping) or not raw.get("indicators"):
        raise SchemaError("schema-invalid", file=FILE, reason="needs indicators")
    schema = load_schema()
    _check_condition(raw.get("population"), schema, "population")
    dims: dict[str, Dimension] = {}
    for name, spec in (raw.get("dimensions") or {}).items():
        dims[str(name)] = _parse_dimension(str(name), spec, schema, dims)
    indicators: dict[str, Indicator] = {}
    for spec in raw["indicators"]:
        indicator = _parse_indicator(spec, dims, schema)
        if indicator.name in indicators:
            raise SchemaError("schema-invalid", file=FILE, reason=f"{indicator.name} twice")
        indicators[indicator.name] = indicator
    return IndicatorCatalogue(raw["population"], dims, indicators, schema)


def _condition_fields(cond: Any) -> set[str]:
    if not isinstance(cond, Mapping):
        return set()
    found: set[str] = set()
    for key, value in cond.items():
        if key in {"all", "any"}:
            for part in value:
                found |= _condition_fields(part)
        elif key == "not":
            found |= _condition_fields(value)
        elif key in {"recorded", "known"}:
            found.add(str(value))
        else:
            found.add(str(key))
    return found


def referenced_columns(catalogue: IndicatorCatalogue) -> list[str]:
    """The active_cases columns any indicator, dimension or the population rule reads."""
    fields = _condition_fields(catalogue.population)
    for ind in catalogue.indicators.values():
        for cond in (ind.numerator, ind.denominator, ind.scope):
            fields |= _condition_fields(cond)
        fields |= set(ind.months_between or ())
    columns = {_COLUMN_OF_FIELD.get(f, f) for f in fields} | {"report_date", "governorate"}
    columns |= {d.column for d in catalogue.dimensions.values() if d.column}
    return ["org", "record_key", *sorted(columns)]


def counted_records(indicator: Indicator) -> tuple[str, tuple[str, str] | None]:
    """What the records of an indicator's count table are (its scope or denominator), canonical."""
    import json

    cond = indicator.scope if indicator.kind == "count" else indicator.denominator
    return json.dumps(cond, sort_keys=True), indicator.months_between


def population_key(indicator: Indicator, catalogue: IndicatorCatalogue) -> str:
    """The name under which this indicator's counts are linked with other tables: the first
    indicator in the file that counts the same records. Two tables whose cells count the same
    children (cases by sex; the denominator of the share of boys by region) then share their
    cells in protection, so a cell hidden in one cannot be read from the other."""
    mine = counted_records(indicator)
    same = [o for o in catalogue.indicators.values() if counted_records(o) == mine]
    counts = [o for o in same if o.kind == "count"]
    return (counts or same or [indicator])[0].name


# --- SQL -------------------------------------------------------------------------------------------


def condition_sql(cond: Any, schema: CaseSchema) -> str:
    """A SQL boolean that is never NULL: a missing value satisfies no atom."""
    parts: list[str] = []
    for key, value in cond.items():
        if key == "all":
            parts.append("(" + " AND ".join(condition_sql(c, schema) for c in value) + ")")
        elif key == "any":
            parts.append("(" + " OR ".join(condition_sql(c, schema) for c in value) + ")")
        elif key == "not":
            parts.append(f"(NOT {condition_sql(value, schema)})")
        elif key == "recorded":
            f = schema.field(str(value))
            column = _COLUMN_OF_FIELD.get(f.name, f.name)
            if f.multi:
                parts.append(f"coalesce(len({column}) > 0, false)")
            else:
                parts.append(f"({column} IS NOT NULL)")
        elif key == "known":
            f = schema.field(str(value))
            column = _COLUMN_OF_FIELD.get(f.name, f.name)
            if f.multi:
                parts.append(
                    f"coalesce(len(list_filter({column}, lambda x: x <> 'unknown')) > 0, false)"
                )
            else:
                parts.append(f"coalesce({column} <> 'unknown', false)")
        else:
            f = schema.field(str(key))
            column = _COLUMN_OF_FIELD.get(f.name, f.name)
            codes = value if isinstance(value, list) else [value]
            listed = ", ".join(sql_text(str(c)) for c in codes)
            if f.multi:
                parts.append(f"coalesce(list_has_any({column}, [{listed}]), false)")
            else:
                parts.append(f"coalesce({column} IN ({listed}), false)")
    return "(" + " AND ".join(parts) + ")"


@dataclass(frozen=True)
class TableRequest:
    """One table to count: an indicator, its dimensions, filters and the periods it covers."""

    indicator: str
    dimensions: tuple[str, ...] = ()
    where: tuple[tuple[str, tuple[str, ...]], ...] = ()  # dimension -> codes, all must hold
    period_unit: str = "year"
    name: str = ""

    @property
    def table_name(self) -> str:
        return self.name or "__".join((self.indicator, *self.dimensions))

    def filter_codes(self, dimension: str) -> tuple[str, ...] | None:
        for name, codes in self.where:
            if name == dimension:
                return codes
        return None


def check_request(request: TableRequest, catalogue: IndicatorCatalogue | None = None) -> None:
    """Refuse a table the indicator does not allow (unknown, disallowed or repeated dimensions)."""
    catalogue = catalogue or load_indicators()
    indicator = catalogue.indicator(request.indicator)
    dims = request.dimensions
    for d in dims:
        catalogue.dimension(d)
        if d not in indicator.dimensions:
            raise UsageError(
                "dimension-not-allowed",
                indicator=indicator.name,
                dimension=d,
                allowed=", ".join(indicator.dimensions),
            )
    if len(set(dims)) != len(dims):
        raise UsageError("dimension-repeated", dimensions=", ".join(dims))
    if len(dims) > MAX_DIMENSIONS:
        raise UsageError("dimensions-too-many", limit=MAX_DIMENSIONS)
    for d in dims:
        source = catalogue.dimension(d).source
        if source is not None and source in dims:
            # Governorates nest in regions (age bands in wider ones): a cross of the two is not
            # a table of independent margins.
            raise UsageError("dimension-nested", outer=d, inner=source)
    if request.period_unit not in PERIOD_UNITS:
        raise UsageError("period-unit-invalid", unit=request.period_unit)
    for name, codes in request.where:
        dimension = catalogue.dimension(name)
        if dimension.derived == "period":
            for code in codes:
                if code != LATEST:
                    parse_period(code)
            continue
        bad = [c for c in codes if c not in dimension.code_values]
        if bad or not codes:
            raise UsageError(
                "filter-code-unknown",
                dimension=name,
                code=", ".join(bad)[:60],
                known=", ".join(dimension.code_values),
            )


def resolve_latest(request: TableRequest, last: date | None) -> TableRequest:
    """The request with `period=latest` replaced by the year or quarter (the request's period
    unit) that holds `last`, the latest registration; unchanged when it names no `latest`."""
    codes = request.filter_codes("period")
    if not codes or LATEST not in codes:
        return request
    if last is None:
        raise UsageError("period-latest-empty")
    latest = period_codes(last, last, request.period_unit)[0]
    where = tuple(
        (name, tuple(dict.fromkeys(latest if c == LATEST else c for c in values)))
        if name == "period"
        else (name, values)
        for name, values in request.where
    )
    return TableRequest(
        request.indicator, request.dimensions, where, request.period_unit, request.name
    )


def filter_periods(request: TableRequest) -> list[Period]:
    codes = request.filter_codes("period")
    return [parse_period(c) for c in codes] if codes else []


def base_sql(
    request: TableRequest,
    first: date | None = None,
    last: date | None = None,
    catalogue: IndicatorCatalogue | None = None,
    source: str = "active_cases",
) -> str:
    """One row per counted record: org, integer record key, each dimension, and the flags.

    Columns: `org`, `rk` (record key as an integer), one per dimension, `num` (in the
    numerator: always true for counts), and `months` for a median. Records outside the
    population, the indicator's scope and denominator, the filters or [first, last] are left out.
    """
    catalogue = catalogue or load_indicators()
    check_request(request, catalogue)
    schema = catalogue.schema
    indicator = catalogue.indicator(request.indicator)
    select = ["org", f"CAST(floor(record_key * {KEY_SCALE}) AS BIGINT) AS rk"]
    for name in request.dimensions:
        expr = catalogue.dimension(name).expression(request.period_unit)
        select.append(f"{expr} AS {name}")
    num = condition_sql(indicator.numerator, schema) if indicator.numerator else "true"
    select.append(f"{num} AS num")
    if indicator.months_between:
        start, end = indicator.months_between
        select.append(f"date_diff('month', {start}, {end}) AS months")
    where = _conditions(request, first, last, catalogue)
    return "SELECT " + ", ".join(select) + f" FROM {source} WHERE " + " AND ".join(where)


def _conditions(
    request: TableRequest,
    first: date | None,
    last: date | None,
    catalogue: IndicatorCatalogue,
) -> list[str]:
    """The WHERE conditions of a table: population, scope, denominator, span and filters."""
    schema = catalogue.schema
    indicator = catalogue.indicator(request.indicator)
    where = [condition_sql(catalogue.population, schema)]
    for cond in (indicator.scope, indicator.denominator):
        if cond is not None:
            where.append(condition_sql(cond, schema))
    if indicator.months_between:
        where += [f"{c} IS NOT NULL" for c in indicator.months_between]
    if first is not None:
        where.append(f"report_date >= DATE {sql_text(first.isoformat())}")
    if last is not None:
        where.append(f"report_date <= DATE {sql_text(last.isoformat())}")
    for name, codes in request.where:
        dimension = catalogue.dimension(name)
        if dimension.derived == "period":
            spans = [
                f"report_date BETWEEN DATE {sql_text(p.start.isoformat())} "
                f"AND DATE {sql_text(p.end.isoformat())}"
                for p in (parse_period(c) for c in codes)
            ]
            where.append("(" + " OR ".join(spans) + ")")
            continue
        listed = ", ".join(sql_text(c) for c in codes)
        expr = dimension.expression(request.period_unit)
        if dimension.multi:
            where.append(f"coalesce(list_has_any({expr}, [{listed}]), false)")
        else:
            where.append(f"coalesce({expr} IN ({listed}), false)")
    return where


def packed_sql(
    request: TableRequest,
    first: date | None = None,
    last: date | None = None,
    catalogue: IndicatorCatalogue | None = None,
    source: str = "active_cases",
) -> str:
    """Like base_sql for a count or percentage, packed: one row per organisation, dimension
    categories and numerator flag, with `n` records and `k` the sum of their integer keys (mod
    2^32). Records are grouped on the raw fields first, so the category expressions (list
    filters, CASE) run once per distinct combination instead of once per record."""
    catalogue = catalogue or load_indicators()
    check_request(request, catalogue)
    indicator = catalogue.indicator(request.indicator)
    raw: list[str] = []
    for name in request.dimensions:
        dimension = catalogue.dimension(name)
        column = {"period": "report_date", "region": "governorate"}.get(
            dimension.derived or "", dimension.column or ""
        )
        if column not in raw:
            raw.append(column)
    num = condition_sql(indicator.numerator, catalogue.schema) if indicator.numerator else "true"
    where = _conditions(request, first, last, catalogue)
    inner = (
        f"SELECT org, {''.join(c + ', ' for c in raw)}{num} AS num, count(*) AS n, "
        f"sum(CAST(floor(record_key * {KEY_SCALE}) AS BIGINT)) % {KEY_SCALE} AS k "
        f"FROM {source} WHERE {' AND '.join(where)} GROUP BY ALL"
    )
    dims = "".join(
        f"{catalogue.dimension(d).expression(request.period_unit)} AS {d}, "
        for d in request.dimensions
    )
    return (
        f"SELECT org, {dims}num, CAST(sum(n) AS BIGINT) AS n, "
        f"CAST(sum(k) % {KEY_SCALE} AS BIGINT) AS k FROM ({inner}) GROUP BY ALL"
    )


def period_codes(first: date, last: date, unit: str) -> list[str]:
    """Every year or quarter from the one holding `first` to the one holding `last`."""
    codes = []
    if unit == "quarter":
        index, end = first.year * 4 + (first.month - 1) // 3, last.year * 4 + (last.month - 1) // 3
        for i in range(index, end + 1):
            codes.append(f"{i // 4}-Q{i % 4 + 1}")
    else:
        codes = [str(y) for y in range(first.year, last.year + 1)]
    return codes


def parse_where(texts: Sequence[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """`--where sex=M --where period=2025,2026` as (dimension, codes) pairs."""
    pairs = []
    for text in texts:
        name, sep, codes = str(text).partition("=")
        values = tuple(c.strip() for c in codes.split(",") if c.strip())
        if not sep or not name.strip() or not values:
            raise UsageError("filter-invalid", text=str(text)[:60])
        pairs.append((name.strip(), values))
    return tuple(pairs)


def parse_by(text: str | None) -> tuple[str, ...]:
    """`--by governorate,sex` as a tuple of dimension names."""
    if not text:
        return ()
    return tuple(d.strip() for d in text.split(",") if d.strip())


# --- the indicator reference (docs/indicator-reference.md) ----------------------------------------


def _condition_text(cond: Any) -> str:
    parts = []
    for key, value in cond.items():
        if key in {"all", "any"}:
            joiner = " and " if key == "all" else " or "
            parts.append("(" + joiner.join(_condition_text(c) for c in value) + ")")
        elif key == "not":
            parts.append(f"not {_condition_text(value)}")
        elif key == "recorded":
            parts.append(f"`{value}` is recorded")
        elif key == "known":
            parts.append(f"`{value}` is known (recorded, not `unknown`)")
        else:
            codes = value if isinstance(value, list) else [value]
            parts.append(f"`{key}` ∈ {{{', '.join(f'`{c}`' for c in codes)}}}")
    return " and ".join(parts)


def _plain_condition(cond: Any) -> str:
    return _condition_text(cond).replace("`", "")


def formula_text(indicator: Indicator, catalogue: IndicatorCatalogue | None = None) -> str:
    """The indicator's formula in one line of plain text, e.g.
    "100 × count(reported_to_police ∈ {yes}) / count(reported_to_police is known ...)"."""
    catalogue = catalogue or load_indicators()
    scope = [indicator.scope] if indicator.scope is not None else []
    counted = " and ".join(_plain_condition(c) for c in scope) or "registered cases"
    if indicator.unit == "count":
        return f"count of children: {counted} (each child counted once)"
    if indicator.unit == "rate":
        return (
            f"{indicator.per:,} × count of children ({counted}) / "
            "child population aged 0–17 (reference population, same breakdown)"
        )
    base = _plain_condition(indicator.denominator) if indicator.denominator else "registered cases"
    if indicator.unit == "percent":
        assert indicator.numerator is not None
        return f"100 × count({_plain_condition(indicator.numerator)} among {base}) / count({base})"
    start, end = indicator.months_between or ("", "")
    return f"median of whole months from {start} to {end}, among {base}"


def indicator_reference() -> str:
    """docs/indicator-reference.md, generated from schemas/indicators.yaml."""
    catalogue = load_indicators()
    lines = [
        "# Indicator reference",
        "",
        "Generated from `schemas/indicators.yaml` by `python -m casepool.catalogue.indicators`; do not edit.",
        "",
        f"Every indicator counts only records in the population: {_condition_text(catalogue.population)}"
        " (the double-count rule, see methodology-indicators.md).",
        "",
        "## Indicators",
        "",
    ]
    for ind in catalogue.indicators.values():
        lines += [f"### `{ind.name}` — {ind.labels['en']}", "", ind.description, ""]
        lines.append(f"- unit: {ind.unit}" + (f" (per {ind.per:,} children)" if ind.per else ""))
        lines.append(f"- formula: {formula_text(ind, catalogue)}")
        if ind.scope is not None:
            lines.append(f"- counts records where {_condition_text(ind.scope)}")
        if ind.numerator is not None:
            lines.append(f"- numerator: {_condition_text(ind.numerator)}")
        if ind.unit == "rate":
            lines.append(
                "- denominator: the child population aged 0–17 loaded with "
                "`casepool population load` (its source and year are stated with every rate)"
            )
        if ind.kind != "count":
            denominator = (
                _condition_text(ind.denominator) if ind.denominator else "every registered case"
            )
            lines.append(f"- denominator: {denominator}")
        if ind.months_between:
            lines.append(
                f"- value: median of whole months from `{ind.months_between[0]}` "
                f"to `{ind.months_between[1]}`"
            )
        lines.append("- dimensions: " + ", ".join(f"`{d}`" for d in ind.dimensions))
        lines.append("- labels: " + " · ".join(f"{lang}: {ind.labels[lang]}" for lang in LANGUAGES))
        lines.append("")
    lines += ["## Dimensions", "", "| dimension | from | categories | HXL |", "|---|---|---|---|"]
    for d in catalogue.dimensions.values():
        if d.derived == "period":
            source, cats = "report_date", "years (2025) or quarters (2025-Q3)"
        elif d.derived == "region":
            source, cats = "governorate (its `region`)", ", ".join(d.code_values)
        elif d.derived == "group":
            source = f"`{d.source}`, grouped"
            cats = ", ".join(
                f"{g} = " + " + ".join(f for f, to in d.group_of.items() if to == g)
                for g in d.code_values
            )
        else:
            source = f"`{d.column}`" + (" (multi-valued)" if d.multi else "")
            cats = ", ".join(d.code_values)
            if d.missing:
                cats += f" (empty or unlisted → `{d.missing}`)"
        lines.append(f"| `{d.name}` | {source} | {cats} | `{d.hxl}` |")
    lines.append("")
    return "\n".join(lines)

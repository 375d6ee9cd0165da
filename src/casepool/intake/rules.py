"""Cross-field rules as data: schemas/case_record.yaml names each rule, this module holds its check.

A check turns a rule into a polars condition that is true on the rows breaking it; the condition
already requires every field the rule reads to be valid, so one error never causes another.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import polars as pl

from casepool.core.schema import CaseSchema, Rule

Valid = Mapping[str, pl.Expr]  # field -> "this row's value of the field is valid"
Check = Callable[[Rule, CaseSchema, Valid], pl.Expr]


def not_after_month(rule: Rule, schema: CaseSchema, ok: Valid) -> pl.Expr:
    later = rule.arg("than")
    month = pl.col(later).dt.truncate("1mo")
    return ok[rule.field] & ok[later] & (pl.col(rule.field) > month)


def within_parent(rule: Rule, schema: CaseSchema, ok: Valid) -> pl.Expr:
    parent_field = rule.arg("parent")
    codelist = schema.codelist_of(schema.field(rule.field))
    parent_of = {c.code: c.parent for c in codelist.codes}
    parent = pl.col(rule.field).replace_strict(parent_of, default=None, return_dtype=pl.String)
    return (
        ok[rule.field]
        & ok[parent_field]
        & pl.col(rule.field).is_not_null()
        & pl.col(parent_field).is_not_null()
        & (parent != pl.col(parent_field))
    )


def _listed(column: str) -> pl.Expr:
    return pl.col(column).list.len().fill_null(0) > 0


def _both_valid(rule: Rule, ok: Valid) -> pl.Expr:
    when = rule.arg("when")
    return ok[when] & ok[rule.field] & pl.col(when).is_not_null()


def _has_code(rule: Rule) -> pl.Expr:
    return pl.col(rule.arg("when")).list.contains(pl.lit(rule.arg("code"))).fill_null(False)


def only_with_code(rule: Rule, schema: CaseSchema, ok: Valid) -> pl.Expr:
    return _both_valid(rule, ok) & _listed(rule.field) & ~_has_code(rule)


def required_with_code(rule: Rule, schema: CaseSchema, ok: Valid) -> pl.Expr:
    return _both_valid(rule, ok) & _has_code(rule) & ~_listed(rule.field)


def unique(rule: Rule, schema: CaseSchema, ok: Valid) -> pl.Expr:
    value = pl.col(rule.field)
    return value.is_not_null() & ~value.is_first_distinct()


CHECKS: dict[str, Check] = {
    "not-after-month": not_after_month,
    "within-parent": within_parent,
    "only-with-code": only_with_code,
    "required-with-code": required_with_code,
    "unique": unique,
}


def broken(rule: Rule, schema: CaseSchema, ok: Valid) -> pl.Expr:
    """True on the rows that break `rule`."""
    return CHECKS[rule.check](rule, schema, ok)

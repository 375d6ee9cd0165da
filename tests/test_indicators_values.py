"""Every indicator on the hand-made warehouse equals the value worked out by hand (before protection).

The ten records are listed in fixtures/indicators/warehouses.py. Record 3 (referred by the CSO
that registered the child first) and record 10 (superseded submission) are not counted, so eight
children count: F = {1, 4, 5, 7}, M = {2, 6, 9}, U = {8}; KRI = {1, 2, 6, 7, 9}, federal = {4, 5, 8}.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from casepool.catalogue.indicators import TOTAL, TableRequest, load_indicators
from casepool.catalogue.tabulating import indicator_values, tabulate
from casepool.warehouse.store import open_warehouse
from fixtures.indicators.warehouses import build_hand_made


@pytest.fixture(scope="module")
def hand_made(tmp_path_factory) -> Path:
    return build_hand_made(tmp_path_factory.mktemp("hand") / "warehouse.duckdb")


def values(
    warehouse: Path, indicator: str, *dims: str, **where: str
) -> dict[tuple[str, ...], float | None]:
    request = TableRequest(indicator, dims, tuple((k, (v,)) for k, v in where.items()))
    with open_warehouse(warehouse, read_only=True) as con:
        frame = indicator_values(tabulate(con, request))
    return {tuple(row[: len(dims)]): row[len(dims)] for row in frame.iter_rows()}


def approx(x: float) -> object:
    return pytest.approx(x, abs=1e-9)


def test_registered_cases_count_each_child_once(hand_made):
    assert values(hand_made, "registered_cases") == {(): 8}
    assert values(hand_made, "registered_cases", "sex") == {
        ("F",): 4,
        ("M",): 3,
        ("U",): 1,
        (TOTAL,): 8,
    }
    assert values(hand_made, "registered_cases", "region") == {
        ("KRI",): 5,
        ("federal",): 3,
        ("_U",): 0,  # a governorate blanked by local suppression
        (TOTAL,): 8,
    }
    assert values(hand_made, "registered_cases", "period") == {
        ("2024",): 1,
        ("2025",): 7,
        (TOTAL,): 8,
    }


def test_every_category_comes_from_the_code_list_and_empty_ones_are_zero(hand_made):
    by_age = values(hand_made, "registered_cases", "age_band")
    # Record 4 carries a widened band (Y0T9): it counts in _U, never spread over the bands.
    assert by_age == {
        ("Y0T4",): 0,
        ("Y5T9",): 0,
        ("Y10T14",): 4,
        ("Y15T17",): 3,
        ("_U",): 1,
        (TOTAL,): 8,
    }
    by_governorate = values(hand_made, "registered_cases", "governorate")
    assert len(by_governorate) == 20  # 18, not stated (_U), and the total
    assert by_governorate[("IQG18",)] == 0  # only the superseded record was there
    assert by_governorate[("IQG06",)] == 3


def test_quarters_cover_the_span_of_registrations(hand_made):
    request = TableRequest("registered_cases", ("period",), period_unit="quarter")
    with open_warehouse(hand_made, read_only=True) as con:
        frame = tabulate(con, request).counts
    got = dict(frame.select("period", "value").iter_rows())
    assert list(got) == ["2024-Q4", "2025-Q1", "2025-Q2", "2025-Q3", "2025-Q4", TOTAL]
    assert got == {"2024-Q4": 1, "2025-Q1": 2, "2025-Q2": 1, "2025-Q3": 2, "2025-Q4": 2, TOTAL: 8}


def test_multi_valued_categories_count_a_record_in_each_but_once_in_the_total(hand_made):
    got = values(hand_made, "registered_cases", "exploitation_type")
    assert got == {
        ("prostitution",): 3,
        ("online",): 3,
        ("travel_tourism",): 1,
        ("trafficking",): 1,
        ("child_marriage",): 1,
        ("other",): 1,
        (TOTAL,): 8,
    }
    platforms = values(hand_made, "online_cases", "online_platform")
    assert platforms[("tiktok",)] == 2 and platforms[("whatsapp",)] == 1
    assert platforms[("other",)] == 1 and platforms[("facebook",)] == 0
    assert platforms[(TOTAL,)] == 3


def test_shares(hand_made):
    assert values(hand_made, "boys_share") == {(): approx(100 * 3 / 8)}
    assert values(hand_made, "boys_share", "region") == {
        ("KRI",): approx(60.0),
        ("federal",): approx(0.0),
        ("_U",): None,
        (TOTAL,): approx(37.5),
    }
    assert values(hand_made, "online_share") == {(): approx(37.5)}
    assert values(hand_made, "travel_tourism_share") == {(): approx(12.5)}
    assert values(hand_made, "mhpss_share") == {(): approx(37.5)}
    # Working status known for 7 (record 8 empty); working: 1, 5, 6, 9.
    assert values(hand_made, "working_children_share", "sex") == {
        ("F",): approx(50.0),
        ("M",): approx(200 / 3),
        ("U",): None,
        (TOTAL,): approx(400 / 7),
    }
    # Known police status for 7 (record 6 unknown); reported: 1, 2, 7, 8, 9.
    assert values(hand_made, "police_reported_share") == {(): approx(500 / 7)}
    # Barriers recorded for 1, 6, 7, 9 (record 5's empty list is not a record); stigma: 1, 6, 9.
    assert values(hand_made, "stigma_barrier_share") == {(): approx(75.0)}
    # Referral source recorded for 7 (not record 9); social media: 5, 6.
    assert values(hand_made, "social_media_referral_share") == {(): approx(200 / 7)}
    # Population group known for 1, 2, 4, 6, 7, 9; displaced (refugee, IDP): 2, 6.
    assert values(hand_made, "displaced_share") == {(): approx(100 / 3)}


def test_dismissed_among_reported_to_police_by_violence_type(hand_made):
    # Reported: 1 (rape, dismissed), 2 (sexual assault), 7 (rape), 8 (no type -> unknown), 9 (sexual assault, dismissed).
    assert values(hand_made, "police_dismissed_share", "violence_type") == {
        ("rape",): approx(50.0),
        ("sexual_assault",): approx(50.0),
        ("other",): None,
        ("unknown",): approx(0.0),
        (TOTAL,): approx(40.0),
    }
    funnel = values(hand_made, "police_reported_cases", "justice_outcome")
    assert funnel[("dismissed",)] == 2 and funnel[("investigation",)] == 1
    assert funnel[("conviction",)] == 1 and funnel[("in_court",)] == 1 and funnel[(TOTAL,)] == 5
    # The justice-outcome share: one conviction among the five reported to police.
    assert values(hand_made, "conviction_share") == {(): approx(20.0)}


def test_a_rate_is_counted_as_its_count_until_protected(hand_made):
    # Rates are divided by the population only after protection (casepool.publishing.rates).
    assert values(hand_made, "registered_cases_rate", "governorate") == values(
        hand_made, "registered_cases", "governorate"
    )


def test_median_months_from_incident_to_registration(hand_made):
    # Months: 1 -> 2, 2 -> 3, 4 -> 0, 5 -> 2, 6 -> 0, 7 -> 2, 9 -> 2; record 8 has no incident date.
    assert values(hand_made, "months_to_registration") == {(): approx(2.0)}
    assert values(hand_made, "months_to_registration", "sex") == {
        ("F",): approx(2.0),
        ("M",): approx(2.0),
        ("U",): None,
        (TOTAL,): approx(2.0),
    }
    assert values(hand_made, "months_to_registration", "exploitation_type")[("online",)] == approx(
        2.0
    )


def test_filters_narrow_the_records_and_the_categories(hand_made):
    assert values(hand_made, "registered_cases", "sex", region="KRI") == {
        ("F",): 2,
        ("M",): 3,
        ("U",): 0,
        (TOTAL,): 5,
    }
    assert values(hand_made, "registered_cases", "sex", sex="M") == {("M",): 3, (TOTAL,): 3}
    assert values(hand_made, "registered_cases", period="2024") == {(): 1}
    assert values(hand_made, "registered_cases", exploitation_type="online") == {(): 3}


def test_each_organisation_s_own_counts_are_kept_for_the_insider(hand_made):
    with open_warehouse(hand_made, read_only=True) as con:
        tab = tabulate(con, TableRequest("registered_cases", ("sex",)))
    own = {
        (r["sex"], r["contributor"]): r["value"] for r in tab.contributions.iter_rows(named=True)
    }
    assert own == {
        ("F", "ORG-A"): 3,
        ("M", "ORG-A"): 1,
        (TOTAL, "ORG-A"): 4,
        ("F", "ORG-B"): 1,
        ("M", "ORG-B"): 2,
        ("U", "ORG-B"): 1,
        (TOTAL, "ORG-B"): 4,
    }
    summed = tab.contributions.group_by("sex").agg(pl.col("value").sum())
    assert dict(summed.iter_rows()) == dict(tab.counts.select("sex", "value").iter_rows())


def test_every_indicator_is_covered_by_a_test_here():
    tested = {
        "registered_cases",
        "boys_share",
        "online_share",
        "online_cases",
        "travel_tourism_share",
        "working_children_share",
        "police_reported_share",
        "police_dismissed_share",
        "police_reported_cases",
        "conviction_share",
        "mhpss_share",
        "stigma_barrier_share",
        "social_media_referral_share",
        "displaced_share",
        "months_to_registration",
        "registered_cases_rate",
    }
    assert set(load_indicators().indicators) == tested


def test_the_snapshot_publish_counts_from_gives_the_same_values(hand_made):
    from casepool.catalogue.tabulating import snapshot

    catalogue = load_indicators()
    with open_warehouse(hand_made, read_only=True) as con:
        source = snapshot(con, catalogue)
        for ind in catalogue.indicators.values():
            for dims in [(d,) for d in ind.dimensions]:
                request = TableRequest(ind.name, dims)
                direct = indicator_values(tabulate(con, request))
                snapped = indicator_values(tabulate(con, request, source=source))
                assert direct.equals(snapped), (ind.name, dims)

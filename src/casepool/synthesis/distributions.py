"""Draw synthetic case records as integer arrays, vectorised, from schemas/synthesis.yaml."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np

from casepool.core.errors import SchemaError
from casepool.core.schema import CaseSchema, load_schema, read_yaml

EPOCH = date(1970, 1, 1)
DAYS_PER_YEAR = 365.2425
NONE = -1  # an empty cell in a coded column


def day_number(d: date) -> int:
    """Days since 1970-01-01, the integer form every date takes here."""
    return (d - EPOCH).days


def month_start(days: np.ndarray) -> np.ndarray:
    """The first day of each day's month."""
    months = days.astype("datetime64[D]").astype("datetime64[M]")
    return months.astype("datetime64[D]").astype(np.int64)


def add_months(days: np.ndarray, months: np.ndarray) -> np.ndarray:
    """Shift each day by whole months, landing on the 15th (safe in every month)."""
    shifted = days.astype("datetime64[D]").astype("datetime64[M]") + months.astype(np.int64)
    return shifted.astype("datetime64[D]").astype(np.int64) + 14


@dataclass(frozen=True)
class Organisation:
    """A fictional organisation: where it works, its export dialect, its case-number prefix."""

    slug: str
    name: str
    dialect: str
    prefix: str
    home: tuple[str, ...]
    names: tuple[str, ...]


@dataclass
class Settings:
    """schemas/synthesis.yaml, read once."""

    raw: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def organisations(self, count: int) -> list[Organisation]:
        templates = self.raw["organisations"]
        orgs = []
        for i in range(count):
            t = templates[i % len(templates)]
            round_ = i // len(templates)
            suffix = "" if round_ == 0 else f"_{round_ + 1}"
            orgs.append(
                Organisation(
                    slug=f"{t['slug']}{suffix}",
                    name=t["name"] + (f" {round_ + 1}" if round_ else ""),
                    dialect=t["dialect"],
                    prefix=t["prefix"] + (str(round_ + 1) if round_ else ""),
                    home=tuple(t["home"]),
                    names=tuple(t["names"]),
                )
            )
        return orgs


def load_settings() -> Settings:
    """The distribution settings in schemas/synthesis.yaml."""
    raw = read_yaml("synthesis.yaml")
    if not isinstance(raw, dict) or "organisations" not in raw:
        raise SchemaError("schema-invalid", file="synthesis.yaml", reason="organisations missing")
    return Settings(raw)


def weights(table: Mapping[str, float], codes: Sequence[str], where: str) -> np.ndarray:
    """Probabilities over `codes` in code-list order from a {code: weight} table."""
    unknown = set(table) - set(codes)
    if unknown:
        raise SchemaError("schema-invalid", file="synthesis.yaml", reason=f"{where}: {unknown}")
    p = np.array([float(table.get(c, 0.0)) for c in codes])
    return p / p.sum()


_RESOLUTION = 1 << 16


def _uniform(rng: np.random.Generator, size: int) -> np.ndarray:
    """Uniform draws in [0, 1) as float32: half the memory and time, enough for shares."""
    return rng.random(size, dtype=np.float32)


def pick(rng: np.random.Generator, p: np.ndarray, size: int) -> np.ndarray:
    """Indices drawn with probabilities p, via a table of 65,536 slots: one 16-bit draw and one
    lookup per row (probabilities are rounded to 1/65,536, plenty for synthetic data)."""
    cdf = np.cumsum(p)
    cdf[-1] = 1.0
    table = np.searchsorted(cdf, (np.arange(_RESOLUTION) + 0.5) / _RESOLUTION, side="right")
    table = np.minimum(table, len(p) - 1).astype(np.int16)
    return table[rng.integers(0, _RESOLUTION, size, dtype=np.uint16)]


@dataclass
class Cases:
    """All synthetic rows as arrays: code indices (NONE when empty), day numbers, bit masks."""

    columns: dict[str, np.ndarray] = field(default_factory=dict)

    def __getitem__(self, key: str) -> np.ndarray:
        return self.columns[key]

    def __setitem__(self, key: str, value: np.ndarray) -> None:
        self.columns[key] = value

    @property
    def size(self) -> int:
        return len(self.columns["org"])

    def take(self, index: np.ndarray) -> Cases:
        return Cases({k: v[index] for k, v in self.columns.items()})

    def slice(self, start: int, stop: int) -> Cases:
        """Rows [start, stop) as views, without copying."""
        return Cases({k: v[start:stop] for k, v in self.columns.items()})


def _codes(schema: CaseSchema, name: str) -> tuple[str, ...]:
    return schema.codelists[name].values


def _yes_no_unknown(
    rng: np.random.Generator, size: int, given: float, yes: np.ndarray | float, unknown: float
) -> np.ndarray:
    """Indices into yes/no/unknown (0, 1, 2), NONE where the question was left blank."""
    u = _uniform(rng, size)
    answer = np.where(u < yes, 0, 1).astype(np.int16)
    answer[_uniform(rng, size) < unknown] = 2
    answer[_uniform(rng, size) >= given] = NONE
    return answer


def _bits(
    rng: np.random.Generator, probabilities: Sequence[np.ndarray | float], size: int
) -> np.ndarray:
    """A bit mask per row, one independent draw per code (a column at a time, to spare memory)."""
    mask = np.zeros(size, dtype=np.int32)
    for bit, p in enumerate(probabilities):
        mask |= (_uniform(rng, size) < p).astype(np.int32) << bit
    return mask


BLOCK_ROWS = 1_000_000  # rows drawn per block; blocks run in two threads, fixed for any machine


def draw_children(
    settings: Settings,
    schema: CaseSchema,
    orgs: Sequence[Organisation],
    size: int,
    start: date,
    end: date,
    rng: np.random.Generator,
) -> Cases:
    """One row per child as first registered by one organisation, grouped by organisation and
    in registration order (so no sort is needed later).

    What spans all rows (organisation sizes, registration dates, which towns are busiest) is
    drawn first; the rest is drawn in blocks of a fixed size, each with its own random stream,
    two blocks at a time in threads (numpy releases the GIL): the same seed gives the same rows
    on any machine.
    """
    from concurrent.futures import ThreadPoolExecutor

    s = settings
    n_orgs = len(orgs)
    # Bigger organisations first: a Zipf-like share of the caseload.
    org_share = 1.0 / np.arange(1, n_orgs + 1) ** 0.6
    counts = 1 + rng.multinomial(size - n_orgs, org_share / org_share.sum())
    org = np.repeat(np.arange(n_orgs, dtype=np.int16), counts)

    # Registration dates grow linearly over the period; inverse CDF of density 1 + (g-1)x.
    first, last = day_number(start), day_number(end)
    a = (s["growth"] - 1.0) / 2.0
    u = _uniform(rng, size)
    x = u if a == 0 else (-1.0 + np.sqrt(1.0 + 4.0 * a * u * (1.0 + a))) / (2.0 * a)
    report = first + np.floor(x * (last - first + 1)).astype(np.int64)
    report = np.minimum(report, last)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    for lo, hi in itertools.pairwise(bounds):
        report[lo:hi].sort()

    governorates = _codes(schema, "governorate")
    busiest = {g: rng.permutation(len(governorates) + 40) for g in governorates}
    ranges = [(lo, min(lo + BLOCK_ROWS, size)) for lo in range(0, size, BLOCK_ROWS)]
    streams = rng.spawn(len(ranges))

    def block(i: int) -> Cases:
        lo, hi = ranges[i]
        return _draw_block(
            s, schema, orgs, org[lo:hi], report[lo:hi], first, last, busiest, streams[i]
        )

    with ThreadPoolExecutor(max_workers=2) as workers:
        parts = list(workers.map(block, range(len(ranges))))
    return Cases({k: np.concatenate([p[k] for p in parts]) for k in parts[0].columns})


def _draw_block(
    s: Settings,
    schema: CaseSchema,
    orgs: Sequence[Organisation],
    org: np.ndarray,
    report: np.ndarray,
    first: int,
    last: int,
    busiest: dict[str, np.ndarray],
    rng: np.random.Generator,
) -> Cases:
    """Everything about each row given its organisation and registration date."""
    size = len(org)
    cases = Cases()
    cases["org"] = org
    governorates = _codes(schema, "governorate")
    national = weights(s["governorate"], governorates, "governorate")
    gov = pick(rng, national, size)
    at_home = _uniform(rng, size) < s["home_share"]
    for i, organisation in enumerate(orgs):
        rows = np.flatnonzero((org == i) & at_home)
        home = weights(
            {g: national[governorates.index(g)] for g in organisation.home}, governorates, "home"
        )
        gov[rows] = pick(rng, home, len(rows))
    cases["governorate"] = gov

    districts = schema.codelists["district"].codes
    district = np.full(size, NONE, dtype=np.int16)
    for g_index, g in enumerate(governorates):
        members = [i for i, d in enumerate(districts) if d.parent == g]
        rows = np.flatnonzero(gov == g_index)
        if not members or not len(rows):
            continue
        # Which towns are busiest differs by seed, the same in every block.
        order = np.argsort(np.argsort(busiest[g][: len(members)]))
        p = 1.0 / (order + 1.0) ** s["district_zipf"]
        district[rows] = np.array(members, dtype=np.int16)[pick(rng, p / p.sum(), len(rows))]
    district[_uniform(rng, size) >= s["district_given"]] = NONE
    cases["district"] = district

    sexes = _codes(schema, "sex")
    sex = pick(rng, weights(s["survivor_sex"], sexes, "survivor_sex"), size)
    cases["survivor_sex"] = sex
    age = np.zeros(size, dtype=np.int16)
    for i, code in enumerate(sexes):
        rows = np.flatnonzero(sex == i)
        w = np.array(s["age_weights"][code], dtype=float)
        age[rows] = pick(rng, w / w.sum(), len(rows))
    cases["survivor_age"] = age

    region = np.array(
        [
            schema.codelists["governorate"].codes[i].attributes.get("region", "federal") == "KRI"
            for i in range(len(governorates))
        ]
    )[gov]
    groups = _codes(schema, "population_group")
    population = np.zeros(size, dtype=np.int16)
    for key, mask in (("KRI", region), ("federal", ~region)):
        rows = np.flatnonzero(mask)
        population[rows] = pick(rng, weights(s["population_group"][key], groups, key), len(rows))
    cases["population_group"] = population

    minority_yes = np.full(size, s["minority_yes"]["default"])
    for g, share in s["minority_yes"].items():
        if g != "default":
            minority_yes[gov == governorates.index(g)] = share
    given = s["optional_answer"]
    unknown = s["unknown_share"]
    cases["minority_community"] = _yes_no_unknown(
        rng, size, given["minority_community"], minority_yes, unknown
    )
    cases["disability"] = _yes_no_unknown(
        rng, size, given["disability"], s["disability_yes"], unknown
    )
    working = np.array([s["working_child_yes"][c] for c in sexes])[sex]
    cases["working_child"] = _yes_no_unknown(rng, size, given["working_child"], working, unknown)
    cases["out_of_school"] = _yes_no_unknown(
        rng, size, given["out_of_school"], s["out_of_school_yes"], unknown
    )

    cases["report_date"] = report
    time_share = (report - first) / max(last - first, 1)

    lag = np.minimum(
        rng.geometric(1.0 / (s["lag_mean_months"] + 1.0), size) - 1, s["lag_max_months"]
    )
    incident = report - np.floor(lag * 30.44 + _uniform(rng, size) * 20).astype(np.int64)
    incident = np.minimum(incident, report)
    cases["incident_date"] = incident
    cases["incident_given"] = _uniform(rng, size) < s["incident_given"]
    cases["incident_month_only"] = _uniform(rng, size)  # each dialect decides its own share

    exploitation = _codes(schema, "exploitation_type")
    online_bit = exploitation.index("online")
    p_types: list[np.ndarray | float] = []
    for t in exploitation:
        if t == "online":
            p_types.append(s["online_start"] + (s["online_end"] - s["online_start"]) * time_share)
        else:
            table = np.array([s["exploitation"][code].get(t, 0.0) for code in sexes])
            p_types.append(table[sex])
    types = _bits(rng, p_types, size)
    fallback = np.where(
        sex == sexes.index("F"),
        exploitation.index("child_marriage"),
        exploitation.index("prostitution"),
    )
    types = np.where(types == 0, 1 << fallback, types).astype(np.int32)
    cases["exploitation_types"] = types
    online = (types >> online_bit) & 1 == 1

    platforms = _codes(schema, "online_platform")
    early = weights(s["platforms_early"], platforms, "platforms_early")
    late = weights(s["platforms_late"], platforms, "platforms_late")
    first_platform = np.where(
        _uniform(rng, size) < time_share, pick(rng, late, size), pick(rng, early, size)
    )
    gaming = platforms.index("gaming")
    boys = sex == sexes.index("M")
    first_platform[boys & (_uniform(rng, size) < late[gaming] * (s["gaming_boys_factor"] - 1))] = (
        gaming
    )
    mask = (1 << first_platform.astype(np.int32)).astype(np.int32)
    second = _uniform(rng, size) < s["second_platform"]
    mask = np.where(second, mask | (1 << pick(rng, late, size).astype(np.int32)), mask)
    plain = (1 << platforms.index("unknown")) | (1 << platforms.index("other"))
    # "unknown" or "other" beside a named platform is not what anyone writes.
    mask = np.where((mask & ~plain) != 0, mask & ~plain, mask)
    cases["online_platforms"] = np.where(online, mask, 0).astype(np.int32)

    cases["violence_type"] = pick(
        rng, weights(s["violence_type"], _codes(schema, "violence_type"), "violence_type"), size
    )
    relations = _codes(schema, "perpetrator_relationship")
    cases["perpetrator_relationship"] = np.where(
        online,
        pick(rng, weights(s["perpetrator"]["online"], relations, "perpetrator"), size),
        pick(rng, weights(s["perpetrator"]["offline"], relations, "perpetrator"), size),
    ).astype(np.int16)
    cases["referral_source"] = pick(
        rng, weights(s["referral_source"], _codes(schema, "referral_source"), "referral"), size
    )
    services = _codes(schema, "service")
    cases["services_received"] = _bits(rng, list(_probs(s["services"], services)), size)
    barriers = _codes(schema, "service_barrier")
    barrier_mask = _bits(rng, list(_probs(s["service_barriers"], barriers)), size)
    barrier_mask[_uniform(rng, size) >= s["service_barriers_given"]] = 0
    cases["service_barriers"] = barrier_mask

    police_codes = _codes(schema, "yes_no_unknown")
    police = pick(rng, weights(s["reported_to_police"], police_codes, "police"), size)
    cases["reported_to_police"] = police
    outcomes = _codes(schema, "justice_outcome")
    outcome = np.where(
        police == 0,
        pick(rng, weights(s["justice_outcome"]["yes"], outcomes, "justice"), size),
        pick(rng, weights(s["justice_outcome"]["other"], outcomes, "justice"), size),
    ).astype(np.int16)
    outcome[_uniform(rng, size) >= s["justice_outcome_given"]] = NONE
    cases["justice_outcome"] = outcome

    elsewhere = np.where(_uniform(rng, size) < 0.85, 1, 2).astype(np.int16)  # no, unknown
    elsewhere[_uniform(rng, size) < s["reported_elsewhere_yes_alone"]] = 0
    elsewhere[_uniform(rng, size) >= given["reported_elsewhere"]] = NONE
    cases["reported_elsewhere"] = elsewhere

    months_open = (last - report) / 30.44
    closed = _uniform(rng, size) < np.clip(months_open / s["closed_after_months"], 0.05, 0.9)
    cases["case_status"] = np.where(closed, 1, 0).astype(np.int16)

    cases["consent_statistics"] = np.where(_uniform(rng, size) < s["consent_no"], 1, 0).astype(
        np.int16
    )
    cases["child"] = np.arange(size, dtype=np.int64)
    cases["copy"] = np.zeros(size, dtype=bool)
    _draw_birth_dates(cases, s, rng)
    return cases


def _probs(table: Mapping[str, float], codes: Sequence[str]) -> np.ndarray:
    """Independent probabilities per code (not normalised), checked against the code list."""
    weights(table, codes, "probabilities")
    return np.array([float(table.get(c, 0.0)) for c in codes])


def age_reference(cases: Cases) -> np.ndarray:
    """The day age is counted at: the first of the incident month, else the registration day."""
    return np.where(
        cases["incident_given"], month_start(cases["incident_date"]), cases["report_date"]
    )


def birth_date_for(reference: np.ndarray, age: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A date of birth giving exactly `age` completed years on the reference day.

    The birthday falls 31 to 330 days before the reference's anniversary, so the age holds at
    any day of the reference month and no leap-day rounding can tip it.
    """
    offset = 31 + np.floor(rng.random(len(reference)) * 300).astype(np.int64)
    return reference - np.round(age * DAYS_PER_YEAR).astype(np.int64) - offset


def _draw_birth_dates(cases: Cases, s: Settings, rng: np.random.Generator) -> None:
    size = cases.size
    cases["date_of_birth"] = birth_date_for(age_reference(cases), cases["survivor_age"], rng)
    cases["dob_given"] = _uniform(rng, size) < s["date_of_birth_given"]
    cases["age_shown"] = ~(
        cases["dob_given"] & (_uniform(rng, size) < s["age_left_blank_when_dob"])
    )


# Fields that describe the child and the incident: shared by both registrations of one child.
CHILD_FIELDS = (
    "child",
    "ethnicity",
    "survivor_sex",
    "survivor_age",
    "date_of_birth",
    "dob_given",
    "population_group",
    "minority_community",
    "disability",
    "governorate",
    "district",
    "incident_date",
    "incident_given",
    "incident_month_only",
    "exploitation_types",
    "online_platforms",
    "violence_type",
    "perpetrator_relationship",
    "working_child",
    "out_of_school",
)
ETHNICITY = {"arabic": 0, "kurdish": 1, "kurdish_latin": 1}


def draw_ethnicity(cases: Cases, orgs: Sequence[Organisation], rng: np.random.Generator) -> None:
    """Which name pool each child's names come from: the organisation's first pool mostly."""
    first = np.array([ETHNICITY[o.names[0]] for o in orgs])[cases["org"]]
    second = np.array([ETHNICITY[o.names[-1]] for o in orgs])[cases["org"]]
    cases["ethnicity"] = np.where(rng.random(cases.size) < 0.7, first, second).astype(np.int8)


def add_cross_org_copies(
    cases: Cases,
    orgs: Sequence[Organisation],
    share: float,
    rng: np.random.Generator,
) -> None:
    """Turn a share of rows into second registrations of another organisation's child.

    Both rows say reported_elsewhere = yes; the later registration takes the child and incident
    of the earlier one and keeps its own organisation, date, services and case number, and was
    referred by the first organisation (referral_source = cso), which was not referred by a CSO. Its
    organisation must be able to write the child's name (Windows-1256 cannot hold Sorani).
    """
    size = cases.size
    wanted = round(share * size)
    if len(orgs) < 2 or wanted == 0:
        return
    supports = np.zeros((len(orgs), 2), dtype=bool)
    for i, o in enumerate(orgs):
        for pool in o.names:
            supports[i, ETHNICITY[pool]] = True
    # Candidate pairs from two disjoint halves of a shuffle; keep those across two
    # organisations that can both write the child's name.
    order = rng.permutation(size)
    half = size // 2
    candidates = min(2 * wanted, half)
    sources, targets = order[:candidates], order[half : half + candidates]
    valid = (cases["org"][sources] != cases["org"][targets]) & supports[
        cases["org"][targets], cases["ethnicity"][sources]
    ]
    sources, targets = sources[valid][:wanted], targets[valid][:wanted]
    # The child's details go from the earlier registration to the later one, so the order of
    # rows (by registration) stays as it is and the incident precedes both registrations.
    later_first = cases["report_date"][targets] < cases["report_date"][sources]
    sources, targets = (
        np.where(later_first, targets, sources),
        np.where(later_first, sources, targets),
    )
    fits = supports[cases["org"][targets], cases["ethnicity"][sources]]
    sources, targets = sources[fits], targets[fits]
    # Both organisations record the incident date; age is counted at it, the same for both.
    cases["incident_given"][sources] = True
    reference = month_start(cases["incident_date"][sources])
    cases["date_of_birth"][sources] = birth_date_for(reference, cases["survivor_age"][sources], rng)
    for name in CHILD_FIELDS:
        cases[name][targets] = cases[name][sources]
    for name in [k for k in cases.columns if k.startswith("key_")]:
        cases[name][targets] = cases[name][sources]
    cases["reported_elsewhere"][sources] = 0
    cases["reported_elsewhere"][targets] = 0
    # The double-count rule of the indicators (docs/methodology-indicators.md): the second
    # registration came by referral from the organisation that registered the child first.
    referral = _codes(load_schema(), "referral_source")
    cso, family = referral.index("cso"), referral.index("family")
    cases["referral_source"][targets] = cso
    first = cases["referral_source"][sources]
    cases["referral_source"][sources] = np.where(first == cso, family, first)
    cases["age_shown"][sources] = True
    cases["age_shown"][targets] = True
    cases["copy"][targets] = True

"""Direct identifiers real exports carry (names, phones, addresses, notes), made from small pools.

faker is used once per run to fill pools of Arabic names; rows only pick from pools by index,
so ten million rows cost a few gathers and string concatenations, never a faker call per row.
Kurdish names come from the list below (faker has no Kurdish locale), in Sorani script and in
Latin (Kurmanji/Badini) spelling: the same child can be written either way by two organisations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

# (Sorani script, Latin spelling); first names by sex, then family or tribal names.
KURDISH_MALE = (
    ("ئازاد", "Azad"),
    ("ئارام", "Aram"),
    ("دڵشاد", "Dilshad"),
    ("هێمن", "Hemin"),
    ("کاروان", "Karwan"),
    ("ڕێبوار", "Rebwar"),
    ("شڤان", "Shivan"),
    ("سۆران", "Soran"),
    ("زانا", "Zana"),
    ("بەختیار", "Bakhtiyar"),
    ("هاوڕێ", "Hawre"),
    ("سامان", "Saman"),
    ("شێرزاد", "Sherzad"),
    ("دارا", "Dara"),
    ("بارزان", "Barzan"),
    ("کاوە", "Kawa"),
    ("ڕزگار", "Rizgar"),
    ("نەوزاد", "Nawzad"),
    ("شۆڕش", "Shorsh"),
    ("هیوا", "Hiwa"),
    ("سیروان", "Sirwan"),
    ("گۆران", "Goran"),
    ("ئاکۆ", "Ako"),
    ("هەردی", "Hardi"),
    ("ڕێباز", "Rebaz"),
    ("دیار", "Diyar"),
    ("پشتیوان", "Pshtiwan"),
    ("ئالان", "Alan"),
    ("هۆزان", "Hozan"),
    ("جوان", "Jwan"),
    ("خالید", "Khalid"),
    ("ئیدریس", "Idris"),
)
KURDISH_FEMALE = (
    ("شیلان", "Shilan"),
    ("نەسرین", "Nasrin"),
    ("دیلان", "Dilan"),
    ("ژینۆ", "Zhino"),
    ("ڕۆژان", "Rozhan"),
    ("لانە", "Lana"),
    ("چرا", "Chra"),
    ("شنۆ", "Shno"),
    ("نازدار", "Nazdar"),
    ("ئاڤین", "Avin"),
    ("هانا", "Hana"),
    ("بەهار", "Bahar"),
    ("کاژاڵ", "Kazhal"),
    ("سارا", "Sara"),
    ("شیرین", "Shirin"),
    ("گوڵاڵە", "Gulala"),
    ("بێریڤان", "Berivan"),
    ("هێلین", "Helin"),
    ("ڕۆزا", "Roza"),
    ("ژیان", "Zhiyan"),
    ("ئاواز", "Awaz"),
    ("تارا", "Tara"),
    ("نازەنین", "Nazanin"),
    ("ڕووناک", "Runak"),
    ("سۆزان", "Sozan"),
    ("ڤیان", "Vian"),
    ("نیان", "Nian"),
    ("بەفرین", "Bafrin"),
)
KURDISH_FAMILY = (
    ("بارزانی", "Barzani"),
    ("تاڵەبانی", "Talabani"),
    ("جاف", "Jaff"),
    ("هەورامی", "Hawrami"),
    ("دۆسکی", "Doski"),
    ("زێباری", "Zebari"),
    ("میزووری", "Mizuri"),
    ("سندی", "Sindi"),
    ("هەرکی", "Harki"),
    ("بابان", "Baban"),
    ("ڕەشید", "Rashid"),
    ("مەحموود", "Mahmood"),
    ("قادر", "Qadir"),
    ("کەریم", "Karim"),
    ("عەزیز", "Aziz"),
    ("ساڵح", "Salih"),
    ("حوسێن", "Hussein"),
    ("گەردی", "Gardi"),
    ("شوانی", "Shwani"),
    ("بەرزنجی", "Barzinji"),
)
# Iraqi tribal names faker's Arabic locales lack.
IRAQI_FAMILY = (
    "الجبوري",
    "العبيدي",
    "الدليمي",
    "الشمري",
    "التميمي",
    "الزبيدي",
    "الخزرجي",
    "الربيعي",
    "الساعدي",
    "الموسوي",
    "الحسيني",
    "العزاوي",
    "الطائي",
    "الجنابي",
    "البياتي",
    "الحمداني",
)
NEIGHBOURHOODS = {
    "ar": (
        "الزهراء",
        "النور",
        "الصناعي",
        "العسكري",
        "الحدباء",
        "الجامعة",
        "المثنى",
        "الرفاعي",
        "الأندلس",
        "الكرامة",
        "الشهداء",
        "السلام",
        "العروبة",
        "الضباط",
        "الربيع",
    ),
    "ckb": (
        "ڕزگاری",
        "ئازادی",
        "شۆڕش",
        "بەختیاری",
        "سەرچنار",
        "کانی با",
        "ئاشتی",
        "ڕاپەڕین",
        "زانکۆ",
        "گۆیژە",
        "ئیسکان",
        "کوێستان",
    ),
    "en": (
        "Azadi",
        "Rizgari",
        "Shorsh",
        "Ankawa",
        "Malta",
        "Nakhoshkhana",
        "Zakho Road",
        "Bakhtiari",
        "Al-Zuhour",
        "Al-Muhandiseen",
        "Al-Nour",
        "Al-Sinaa",
    ),
}
CAMPS = {
    "ar": (
        "خانكي",
        "شاريا",
        "دوميز",
        "كبرتو",
        "روانكة",
        "باجد كندالا",
        "ايسيان",
        "مامرشان",
        "جمشكو",
        "قاديا",
        "عربت",
        "آشتي",
        "ديبكة",
        "حسن شام",
    ),
    "ckb": (
        "خانکێ",
        "شاریا",
        "دۆمیز",
        "کەبەرتۆ",
        "ڕوانگە",
        "باجێد کەندالا",
        "ئیسیان",
        "مامرەشان",
        "چەمیشکۆ",
        "قادیا",
        "عەربەت",
        "ئاشتی",
        "دیبەگە",
        "حەسەن شام",
    ),
    "en": (
        "Khanke",
        "Sharya",
        "Domiz",
        "Kabarto",
        "Rwanga",
        "Bajet Kandala",
        "Essian",
        "Mamrashan",
        "Chamishku",
        "Qadia",
        "Arbat",
        "Ashti",
        "Debaga",
        "Hasansham",
    ),
}
ADDRESS = {
    "ar": ("حي {}", "زقاق {}", "دار {}", "مخيم {}", "قاطع {}", "خيمة {}"),
    "ckb": ("گەڕەکی {}", "کۆڵانی {}", "ماڵی {}", "کەمپی {}", "بەشی {}", "چادری {}"),
    "en": ("{}", "Street {}", "House {}", "{} camp", "sector {}", "tent {}"),
}
ADDRESS_SEPARATOR = {"ar": "، ", "ckb": "، ", "en": ", "}
# Free-text notes caseworkers leave; {child}, {caregiver} and {phone} mark personal data.
NOTES = {
    "en": (
        "Follow-up visit done; child attends PSS sessions.",
        "Mother reports the child sleeps better.",
        "Referred to health partner for medical check.",
        "Case conference held with the protection team.",
        "Family moved within the same area.",
        "Awaiting legal counselling appointment.",
        "Child back in school since last month.",
    ),
    "ar": (
        "تمت زيارة المتابعة والطفل يحضر جلسات الدعم النفسي",
        "الأم أفادت بتحسن نوم الطفل",
        "أحيلت الحالة إلى الشريك الصحي للفحص",
        "عقد اجتماع لمناقشة الحالة مع فريق الحماية",
        "انتقلت العائلة داخل المنطقة نفسها",
        "بانتظار موعد الاستشارة القانونية",
        "عاد الطفل إلى المدرسة منذ الشهر الماضي",
    ),
    "ckb": (
        "سەردانی بەدواداچوون کرا، منداڵەکە بەشداری دانیشتنەکانی پاڵپشتی دەروونی دەکات",
        "دایکی دەڵێت خەوی منداڵەکە باشتر بووە",
        "ڕەوانەی هاوبەشی تەندروستی کرا بۆ پشکنین",
        "کۆبوونەوەی کەیس لەگەڵ تیمی پاراستن کرا",
        "خێزانەکە لە هەمان ناوچەدا گواستیانەوە",
        "چاوەڕێی وادەی ڕاوێژی یاسایی دەکات",
    ),
}
MENTIONS = {
    "en": (
        "Call caregiver {caregiver} on {phone} before each visit.",
        "{child} prefers a female caseworker.",
        "Uncle {caregiver} can be reached at {phone}.",
        "Spoke with {caregiver} about school re-enrolment of {child}.",
    ),
    "ar": (
        "الاتصال بولي الأمر {caregiver} على الرقم {phone} قبل الزيارة",
        "{child} تفضل التحدث مع موظفة حالة",
        "يمكن التواصل مع العم {caregiver} على {phone}",
        "تم الحديث مع {caregiver} بخصوص عودة {child} إلى المدرسة",
    ),
    "ckb": (
        "پێش سەردان پەیوەندی بە {caregiver} بکە لە ژمارە {phone}",
        "{child} حەز دەکات لەگەڵ کارمەندێکی ئافرەت قسە بکات",
        "دەتوانرێت پەیوەندی بە مامی {caregiver} بکرێت لە {phone}",
    ),
}
MOBILE_PREFIXES = ("750", "751", "770", "771", "772", "780", "781", "782", "790", "791")
ARABIC_INDIC = [chr(0x0660 + i) for i in range(10)]
ASCII_DIGITS = [str(i) for i in range(10)]


@dataclass(frozen=True)
class NamePools:
    """First names by sex and family names for one script."""

    male: tuple[str, ...]
    female: tuple[str, ...]
    family: tuple[str, ...]


def _unique(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.strip() for v in values if v.strip()))


def arabic_pools(seed: int, size: int = 150) -> NamePools:
    """Arabic names from faker's Arabic locales, drawn once with the run's seed."""
    from faker import Faker

    male: list[str] = []
    female: list[str] = []
    family: list[str] = list(IRAQI_FAMILY)
    for offset, locale in enumerate(("ar_SA", "ar_PS", "ar_AA")):
        fake = Faker(locale)
        fake.seed_instance(seed + offset)
        male += [fake.first_name_male() for _ in range(size)]
        female += [fake.first_name_female() for _ in range(size)]
        family += [fake.last_name() for _ in range(size // 3)]

    def encodable(name: str) -> bool:
        # Arabic names must also fit the Windows-1256 exports.
        try:
            name.encode("cp1256")
        except UnicodeEncodeError:
            return False
        return True

    return NamePools(
        male=tuple(n for n in _unique(male) if encodable(n)),
        female=tuple(n for n in _unique(female) if encodable(n)),
        family=tuple(n for n in _unique(family) if encodable(n)),
    )


def kurdish_pools(script: str) -> NamePools:
    """Kurdish names in Sorani script ("ckb") or Latin spelling ("latin")."""
    i = 0 if script == "ckb" else 1
    return NamePools(
        male=tuple(p[i] for p in KURDISH_MALE),
        female=tuple(p[i] for p in KURDISH_FEMALE),
        family=tuple(p[i] for p in KURDISH_FAMILY),
    )


def draw_identity_keys(size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Raw random keys per child; each export turns them into names in its own script."""
    keys: dict[str, np.ndarray] = {
        name: rng.integers(0, 1 << 30, size, dtype=np.int32)
        for name in ("first", "father", "grandfather", "family", "mother", "neighbourhood", "note")
    }
    keys["caregiver_is_mother"] = rng.random(size) < 0.35
    keys["phone_prefix"] = rng.integers(0, len(MOBILE_PREFIXES), size, dtype=np.int32)
    keys["phone_number"] = rng.integers(0, 10_000_000, size, dtype=np.int32)
    keys["phone_style"] = rng.integers(0, 4, size, dtype=np.int32)
    keys["street"] = rng.integers(1, 60, size, dtype=np.int32)
    keys["house"] = rng.integers(1, 400, size, dtype=np.int32)
    keys["note_draw"] = rng.random(size, dtype=np.float32)
    return keys


def _gather(pool: tuple[str, ...], keys: np.ndarray) -> pl.Series:
    return pl.Series(pool, dtype=pl.String).gather(pl.Series(keys % len(pool)))


def _gather_two(
    first: tuple[str, ...], second: tuple[str, ...], keys: np.ndarray, use_second: np.ndarray
) -> pl.Series:
    """Pick from `second` where use_second, else from `first`, in one gather."""
    index = np.where(use_second, len(first) + keys % len(second), keys % len(first))
    return pl.Series(first + second, dtype=pl.String).gather(pl.Series(index))


def person_names(
    pools: tuple[NamePools, NamePools],
    keys: dict[str, np.ndarray],
    female: np.ndarray,
    second: np.ndarray,
) -> tuple[pl.Series, pl.Series, pl.Series]:
    """(child's first name, child's full name, caregiver's full name) in the Iraqi pattern:
    own name, father's name, family name; the caregiver is the father or the mother.
    Names come from the second pool where `second` (e.g. Kurdish), else from the first."""
    a, b = pools

    def names(part: str, key: str) -> pl.Series:
        return _gather_two(getattr(a, part), getattr(b, part), keys[key], second)

    frame = pl.DataFrame(
        {
            "first": pl.select(
                pl.when(pl.lit(pl.Series(female)))
                .then(pl.lit(names("female", "first")))
                .otherwise(pl.lit(names("male", "first")))
            ).to_series(),
            "father": names("male", "father"),
            "grandfather": names("male", "grandfather"),
            "family": names("family", "family"),
            "mother": names("female", "mother"),
            "is_mother": keys["caregiver_is_mother"],
        }
    )
    out = frame.select(
        "first",
        child=pl.concat_str("first", "father", "family", separator=" "),
        caregiver=pl.when(pl.col("is_mother"))
        .then(pl.concat_str("mother", "family", separator=" "))
        .otherwise(pl.concat_str("father", "grandfather", "family", separator=" ")),
    )
    return out.get_column("first"), out.get_column("child"), out.get_column("caregiver")


def phone_numbers(keys: dict[str, np.ndarray], plus_allowed: bool) -> pl.Series:
    """Iraqi mobile numbers written as people write them: 0750 123 4567, 07501234567,
    +964 750 123 4567 (only where a leading + is safe, i.e. XLSX text cells) or 00964 ..."""
    prefix = _gather(MOBILE_PREFIXES, keys["phone_prefix"])
    number = pl.Series(keys["phone_number"]).cast(pl.String).str.zfill(7)
    style = (
        keys["phone_style"]
        if plus_allowed
        else np.where(keys["phone_style"] == 2, 3, keys["phone_style"])
    )
    # Styles 0-3: 0750 123 4567, 07501234567, +964 750 123 4567, 00964 750 123 4567.
    frame = pl.DataFrame(
        {
            "lead": _gather(("0", "0", "+964 ", "00964 "), style),
            "gap": _gather((" ", "", " ", " "), style),
            "p": prefix,
            "n": number,
        }
    )
    head, tail = pl.col("n").str.slice(0, 3), pl.col("n").str.slice(3, 4)
    return frame.select(
        pl.concat_str("lead", "p", "gap", head, "gap", tail).alias("phone")
    ).get_column("phone")


def addresses(
    keys: dict[str, np.ndarray],
    lang: str,
    governorate: pl.Series,
    district: pl.Series,
    in_camp: np.ndarray,
) -> pl.Series:
    """A street address, or a camp, sector and tent for families living in camps."""
    parts = ADDRESS[lang]
    sep = ADDRESS_SEPARATOR[lang]
    frame = pl.DataFrame(
        {
            "gov": governorate,
            "district": district,
            "neigh": _gather(NEIGHBOURHOODS[lang], keys["neighbourhood"]),
            "camp": _gather(CAMPS[lang], keys["neighbourhood"]),
            "street": keys["street"],
            "house": keys["house"],
            "in_camp": in_camp,
        }
    ).with_columns(pl.col("district").replace("", None))

    def part(template: str, column: str) -> pl.Expr:
        return pl.format(template, pl.col(column))

    if lang == "en":
        town = [
            part(parts[2], "house"),
            part(parts[1], "street"),
            part(parts[0], "neigh"),
            pl.col("district"),
            pl.col("gov"),
        ]
        camp = [
            part(parts[3], "camp"),
            part(parts[4], "street"),
            part(parts[5], "house"),
            pl.col("gov"),
        ]
    else:
        town = [
            pl.col("gov"),
            pl.col("district"),
            part(parts[0], "neigh"),
            part(parts[1], "street"),
            part(parts[2], "house"),
        ]
        camp = [
            pl.col("gov"),
            part(parts[3], "camp"),
            part(parts[4], "street"),
            part(parts[5], "house"),
        ]
    # Camp addresses only for the rows in camps: computing both forms for every row costs double.
    town_addresses = frame.select(pl.concat_str(town, separator=sep, ignore_nulls=True))
    camp_rows = np.flatnonzero(in_camp)
    if not len(camp_rows):
        return town_addresses.to_series().alias("address")
    camp_addresses = frame[camp_rows].select(pl.concat_str(camp, separator=sep, ignore_nulls=True))
    return (
        town_addresses.to_series().scatter(camp_rows, camp_addresses.to_series()).alias("address")
    )


def notes(
    keys: dict[str, np.ndarray],
    lang: str,
    given: float,
    mention_share: float,
    child_first: pl.Series,
    caregiver: pl.Series,
    phone: pl.Series,
) -> tuple[pl.Series, np.ndarray]:
    """Free-text notes (null where none) and which rows' notes name a person or a phone."""
    draw = keys["note_draw"]
    has_note = draw < given
    mentions = has_note & (draw < given * mention_share)
    size = len(draw)
    out = pl.Series("notes", [None] * size, dtype=pl.String)
    plain = NOTES[lang]
    choice = keys["note"]
    for i, text in enumerate(plain):
        rows = np.flatnonzero(has_note & ~mentions & (choice % len(plain) == i))
        if len(rows):
            out = out.scatter(rows, text)
    templates = MENTIONS[lang]
    for i, template in enumerate(templates):
        rows = np.flatnonzero(mentions & (choice % len(templates) == i))
        if not len(rows):
            continue
        index = pl.Series(rows)
        frame = pl.DataFrame(
            {
                "child": child_first.gather(index),
                "caregiver": caregiver.gather(index),
                "phone": phone.gather(index),
            }
        )
        # pl.format takes positional {} only: turn the named placeholders into an ordered list.
        order = [name for name in ("child", "caregiver", "phone") if "{" + name + "}" in template]
        order.sort(key=lambda name: template.index("{" + name + "}"))
        pattern = template
        for name in order:
            pattern = pattern.replace("{" + name + "}", "{}")
        filled = frame.select(pl.format(pattern, *[pl.col(n) for n in order])).to_series()
        out = out.scatter(rows, filled)
    return out, mentions


def arabic_indic(series: pl.Series) -> pl.Series:
    """Digits written in Arabic-Indic script, as Kurdish and many Arabic users type them."""
    return series.str.replace_many(ASCII_DIGITS, ARABIC_INDIC)

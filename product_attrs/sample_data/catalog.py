"""A small Kaggle-layout product catalog (``styles.csv`` + ``images/<id>.jpg``) with the real one's faults.

The demo imitates the Fashion Product Images catalog so the same ingestion code runs on both: the same
header, real category names, a long-tailed article-type distribution, 60x80 thumbnails, and every kind
of defect the real file has (11-field lines, literal ``NA``, empty years, missing, empty and grayscale
images) plus a few a real scraped catalog has (CMYK, PNG-behind-.jpg, EXIF rotation, truncated and
non-image files, a duplicated id, garbage lines). Each planted defect is listed in ``faults.json``
so tests can assert exact counts instead of guessing.

Same ``seed`` => byte-identical files.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from product_attrs.sample_data.drawing import TEXTURES, render_product
from product_attrs.sample_data.encode import BROKEN, encode
from product_attrs.sample_data.taxonomy import (
    ARTICLE_TYPES,
    ARTICLES_BY_NAME,
    COLOUR_WEIGHTS,
    COLOURS,
    SEASON_WEIGHTS,
    SEASONS,
    STYLES_HEADER,
    TEXTURE_WORDS,
    WARM_TYPES,
    YEAR_WEIGHTS,
    YEARS,
)

MIN_PRODUCTS = 80
_GENDER_WEIGHTS = {"Men": 0.45, "Women": 0.40, "Unisex": 0.06, "Boys": 0.05, "Girls": 0.04}
#: Words a product name may use instead of its article noun (so names are informative, not perfect).
_GENERIC_WORDS = {
    "Topwear": "Top",
    "Bottomwear": "Bottoms",
    "Shoes": "Shoes",
    "Bags": "Bag",
    "Fragrance": "Fragrance",
}
#: Image faults, in the order ids are handed out. No id carries two faults of any kind.
IMAGE_FAULTS = (
    "missing_images",
    "zero_byte",
    "truncated",
    "not_an_image",
    "grayscale",
    "cmyk",
    "rgba",
    "palette",
    "exif_rotated",
    "odd_size",
)


@dataclass
class Product:
    id: int
    gender: str
    article: str
    colour: str  # the colour drawn; the CSV may say NA instead
    season: str
    year: str
    usage: str
    name: str
    texture: str

    def fields(self, colour: str | None = None) -> list[str]:
        a = ARTICLES_BY_NAME[self.article]
        return [
            str(self.id),
            self.gender,
            a.master,
            a.sub,
            a.name,
            self.colour if colour is None else colour,
            self.season,
            self.year,
            self.usage,
            self.name,
        ]


def fault_counts(n_products: int) -> dict[str, int]:
    """How many of each fault to plant: fixed small numbers, a few scaled with the catalog size."""
    return {
        "long_lines": 5,
        "unrepairable_lines": 2,
        "duplicate_id": 1,
        "no_year": 2,
        "usage_NA": max(2, n_products // 100),
        "baseColour_NA": max(2, n_products // 300),
        "season_empty": max(1, n_products // 400),
        "usage_empty": 1,
        "missing_images": max(3, n_products // 150),
        "zero_byte": 2,
        "truncated": 1,
        "not_an_image": 1,
        "grayscale": max(3, n_products // 200),
        "cmyk": 2,
        "rgba": 2,
        "palette": 2,
        "exif_rotated": 2,
        "odd_size": 2,
    }


def article_counts(n_products: int) -> dict[str, int]:
    """Rows per article type: the taxonomy's weights scaled to ``n_products``, at least 2 each.

    At the default size this is exactly the taxonomy's weights (1200 rows).
    """
    total = sum(a.weight for a in ARTICLE_TYPES)
    counts = {a.name: max(2, int(round(a.weight * n_products / total))) for a in ARTICLE_TYPES}
    counts[ARTICLE_TYPES[0].name] += n_products - sum(counts.values())  # the head absorbs rounding
    return counts


def _choice(rng: np.random.Generator, options, weights=None):
    p = None if weights is None else np.asarray(weights, dtype=float) / np.sum(weights)
    return options[int(rng.choice(len(options), p=p))]


def _product(pid: int, article: str, rng: np.random.Generator) -> Product:
    a = ARTICLES_BY_NAME[article]
    gender = _choice(rng, a.genders, [_GENDER_WEIGHTS[g] for g in a.genders])
    colour = _choice(rng, list(COLOURS), list(COLOUR_WEIGHTS.values()))
    season = _choice(rng, SEASONS, (0.1, 0.45, 0.4, 0.05) if article in WARM_TYPES else SEASON_WEIGHTS)
    year = str(_choice(rng, YEARS, YEAR_WEIGHTS))
    usage = a.usages[0] if len(a.usages) == 1 or rng.random() < 0.8 else _choice(rng, a.usages[1:])
    texture = a.texture
    if a.master == "Apparel" and rng.random() < 0.15:
        texture = _choice(rng, [t for t in TEXTURES if t not in (a.texture, "diagonal")])
    words = TEXTURE_WORDS[texture]
    texture_word = _choice(rng, words) if rng.random() < (0.7 if texture != "plain" else 0.25) else ""
    noun = _choice(rng, a.words)
    if a.sub in _GENERIC_WORDS and rng.random() < 0.12:
        noun = _GENERIC_WORDS[a.sub]
    brand = _choice(rng, a.brands)
    name = " ".join(w for w in (brand, gender, texture_word, colour, noun) if w)
    return Product(pid, gender, article, colour, season, year, usage, name, texture)


def _make_products(n_products: int, rng: np.random.Generator) -> list[Product]:
    ids = rng.choice(np.arange(1000, 60000), size=n_products, replace=False)
    articles = [name for name, k in article_counts(n_products).items() for _ in range(k)]
    articles = [articles[i] for i in rng.permutation(len(articles))]
    return [_product(int(pid), art, rng) for pid, art in zip(ids, articles)]


def _assign_faults(products: list[Product], rng: np.random.Generator) -> dict[str, list[int]]:
    """Pick disjoint products for every fault, from frequent article types so the tail keeps its rows."""
    counts = fault_counts(len(products))
    head = {a.name for a in ARTICLE_TYPES[:12]}
    pool = [i for i in rng.permutation(len(products)) if products[i].article in head]
    kinds = [
        "long_lines",
        "duplicate_id",
        "no_year",
        "usage_NA",
        "baseColour_NA",
        "season_empty",
        "usage_empty",
        *IMAGE_FAULTS,
    ]
    needed = sum(counts[k] for k in kinds)
    if needed > len(pool):
        raise ValueError(f"catalog too small to plant {needed} faults; use at least {MIN_PRODUCTS} products")
    out: dict[str, list[int]] = {}
    start = 0
    for kind in kinds:
        out[kind] = [int(i) for i in pool[start : start + counts[kind]]]
        start += counts[kind]
    return out


def _styles_lines(
    products: list[Product], picks: dict[str, list[int]], rng: np.random.Generator, spare_id: int
) -> tuple[list[str], dict]:
    """The data lines of styles.csv (in file order) and the row-level faults with their line numbers."""
    for i in picks["no_year"]:
        products[i].year = ""
    for i in picks["usage_NA"]:
        products[i].usage = "NA"
    for i in picks["usage_empty"]:
        products[i].usage = ""
    for i in picks["season_empty"]:
        products[i].season = ""
    colour_na = set(picks["baseColour_NA"])
    long_lines = set(picks["long_lines"])

    entries: list[tuple[str, str, int | None]] = []  # (kind, text, id)
    for i, p in enumerate(products):
        fields = p.fields(colour="NA" if i in colour_na else None)
        if i in long_lines:
            # Like the real "Perfume and Body Mist, Blue": an unquoted comma inside the last column.
            fields[-1] = f"{p.article}, {p.colour}"
            p.name = fields[-1]
            entries.append(("long", ",".join(fields), p.id))
        else:
            entries.append(("ok", ",".join(fields), p.id))

    dup = products[picks["duplicate_id"][0]]
    dup_fields = dup.fields()
    dup_fields[6] = next(s for s in SEASONS if s != dup.season)  # a conflicting second record
    picked = {i for idx in picks.values() for i in idx}
    clean = [p for i, p in enumerate(products) if i not in picked]
    bad_1 = ",".join([str(spare_id)] + clean[0].fields()[1:4])  # a line cut short: 4 fields
    bad_2 = ",".join(["#REF!"] + clean[1].fields()[1:])  # a spreadsheet error instead of an id
    first_dup_pos = next(k for k, e in enumerate(entries) if e[2] == dup.id)
    inserts = [
        (int(rng.integers(first_dup_pos + 1, len(entries) + 1)), ("duplicate", ",".join(dup_fields), dup.id)),
        (int(rng.integers(1, len(entries))), ("unrepairable", bad_1, None)),
        (int(rng.integers(1, len(entries))), ("unrepairable", bad_2, None)),
    ]
    for pos, entry in sorted(inserts, key=lambda t: t[0], reverse=True):
        entries.insert(pos, entry)

    faults: dict = {"long_lines": [], "unrepairable_lines": [], "duplicate_id_lines": []}
    for k, (kind, text, pid) in enumerate(entries):
        line = k + 2  # 1-based, the header is line 1
        if kind == "long":
            faults["long_lines"].append({"line": line, "id": pid})
        elif kind == "unrepairable":
            faults["unrepairable_lines"].append({"line": line, "raw": text})
    dup_lines = [k + 2 for k, e in enumerate(entries) if e[2] == dup.id]
    faults["duplicate_id"] = [dup.id]
    faults["duplicate_id_lines"] = [{"id": dup.id, "lines": dup_lines}]
    return [e[1] for e in entries], faults


def generate_catalog(out_dir: Path, n_products: int = 1200, seed: int = 0) -> dict:
    """Write ``styles.csv``, ``images/<id>.jpg`` and ``faults.json`` under ``out_dir``; return the faults.

    ``out_dir/images`` is emptied first so a re-run never leaves stale pictures behind.
    """
    if n_products < MIN_PRODUCTS:
        raise ValueError(f"n_products must be at least {MIN_PRODUCTS}, got {n_products}")
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    products = _make_products(n_products, rng)
    spare_id = int(rng.integers(60000, 70000))  # id of the cut-short line; never an image
    picks = _assign_faults(products, rng)
    lines, faults = _styles_lines(products, picks, rng, spare_id)

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "styles.csv").write_text("\n".join([",".join(STYLES_HEADER), *lines]) + "\n", encoding="utf-8")

    image_dir = out_dir / "images"
    if image_dir.exists():
        shutil.rmtree(image_dir)
    image_dir.mkdir()
    kind_of = {i: kind for kind in IMAGE_FAULTS for i in picks[kind]}
    variant = {i: n for kind in IMAGE_FAULTS for n, i in enumerate(picks[kind])}
    n_files = n_good = 0
    for i, p in enumerate(products):
        kind = kind_of.get(i, "good")
        if kind == "missing_images":
            continue
        img_rng = np.random.default_rng([seed, p.id])  # per id: a picture does not depend on row order
        img = render_product(p.article, COLOURS[p.colour], p.texture, img_rng)
        (image_dir / f"{p.id}.jpg").write_bytes(encode(img, kind, variant.get(i, 0)))
        n_files += 1
        n_good += kind not in BROKEN

    def ids(kind: str) -> list[int]:
        return sorted(products[i].id for i in picks[kind])

    n_rows = len(lines)
    bad_image_ids = {i for kind in ("missing_images", *BROKEN) for i in ids(kind)}
    faults.update({kind: ids(kind) for kind in IMAGE_FAULTS})
    faults["exif_orientation"] = {
        str(products[i].id): (6 if n % 2 == 0 else 8) for n, i in enumerate(picks["exif_rotated"])
    }
    faults["no_year"] = ids("no_year")
    faults["na_values"] = {k: ids(k) for k in ("usage_NA", "baseColour_NA", "season_empty", "usage_empty")}
    faults.update(
        {
            "seed": seed,
            "n_rows": n_rows,  # data lines in styles.csv, header excluded
            "n_products": n_products,  # distinct valid ids (what a correct ingestion keeps)
            "n_image_files": n_files,
            "n_good_images": n_good,  # files PIL decodes fully (after mode conversion / transpose)
            "n_products_with_good_image": n_products - len(bad_image_ids),
            "article_counts": article_counts(n_products),
        }
    )
    (out_dir / "faults.json").write_text(
        json.dumps(faults, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return faults

"""Benchmark: build the recommendation tables for 1M events and time one customer's recommendations.

Synthetic and seeded: a 44k-product catalog shaped like the Fashion Product Images one (143 article
types of Zipf-like sizes, 47 colours), ~50k customers with latent article-type and colour preferences,
1M events (view / add_to_cart / purchase) over 120 days. It then runs the warehouse steps the Dagster
assets run (``customer_interactions``, ``customer_attribute_affinity``, ``recommendations``) on a real
lake (SQLite catalog), and times, for a sample of customers (median and p95, warm connection):

- the lookup in the precomputed ``recommendations`` table,
- the on-the-fly ``recommend_for(customer)`` macro (the customer's affinity recomputed from the raw
  events, then every product scored, by cells, see ``product_attrs.warehouse.recommend``),
- a pandas baseline of the same on-the-fly computation, on DataFrames already in memory.

It checks that the macro returns what the batch table holds for every sampled customer.

    .venv/bin/python bench/bench_recommendations.py                 # full size (~3-4 min on 2 cores)
    .venv/bin/python bench/bench_recommendations.py --customers 5000 --events 100000   # quick
    .venv/bin/python bench/bench_recommendations.py --similar       # also similar_products at 512-d
    .venv/bin/python bench/bench_recommendations.py --threads 1     # DuckDB threads for the point queries
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from product_attrs.warehouse.affinity import AffinityParams, feature_values
from product_attrs.warehouse.analytics import (
    step_affinity,
    step_interactions,
    step_recommendations,
    step_similar_products,
)
from product_attrs.warehouse.lake import Lake, connect, reading
from product_attrs.warehouse.publish import publish_tables
from product_attrs.warehouse.recommend import RecommenderParams

MASTERS = ["Apparel", "Accessories", "Footwear", "Personal Care", "Free Items", "Sporting Goods", "Home"]
GENDERS = ["Men", "Women", "Unisex", "Boys", "Girls"]
START = pd.Timestamp("2026-03-03")
DAYS = 120


def synthetic_catalog(n_products: int, rng: np.random.Generator) -> pd.DataFrame:
    """Like the real catalog: Zipf-sized article types, each mostly for one gender and in a few
    colours (the real 44k catalog has 2,753 distinct attribute combinations)."""
    n_types, n_subs, n_colours = 143, 45, 47
    type_p = 1.0 / np.arange(1, n_types + 1) ** 1.1
    type_p /= type_p.sum()
    sub_of_type = rng.integers(n_subs, size=n_types)
    master_of_sub = np.minimum(rng.geometric(0.45, size=n_subs) - 1, len(MASTERS) - 1)
    art = rng.choice(n_types, size=n_products, p=type_p)
    sub = sub_of_type[art]
    main_gender = rng.choice(len(GENDERS), size=n_types, p=[0.45, 0.38, 0.1, 0.04, 0.03])
    gender = np.where(
        rng.random(n_products) < 0.9, main_gender[art], rng.integers(len(GENDERS), size=n_products)
    )
    colour_order = np.stack([rng.permutation(n_colours) for _ in range(n_types)])  # each type its palette
    colour_rank = np.minimum(rng.zipf(1.8, size=n_products) - 1, n_colours - 1)
    colour = colour_order[art, colour_rank]
    return pd.DataFrame(
        {
            "id": np.arange(1000, 1000 + n_products),
            "gender": np.array(GENDERS)[gender],
            "master_category": np.array(MASTERS)[master_of_sub[sub]],
            "sub_category": np.array([f"Sub{i:02d}" for i in range(n_subs)])[sub],
            "article_type": np.array([f"Type{i:03d}" for i in range(n_types)])[art],
            "base_colour": np.array([f"Colour{i:02d}" for i in range(n_colours)])[colour],
            "season": "Summer",
            "year": 2016,
            "usage": "Casual",
            "product_display_name": [f"Product {i}" for i in range(n_products)],
            "image_path": "",
            "split": "train",
            "subset": "top20",
        }
    )


def _draw_within(
    groups: pd.Series, keys: np.ndarray, weights: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """For each key, one product index drawn from ``groups[key]`` with probability ~ weights."""
    out = np.full(len(keys), -1, dtype=np.int64)
    for key, where in pd.Series(np.arange(len(keys))).groupby(keys).groups.items():
        members = groups.get(key)
        if members is None or len(members) == 0:
            continue
        cum = np.cumsum(weights[members])
        picks = np.searchsorted(cum, rng.random(len(where)) * cum[-1])
        out[np.asarray(where)] = members[np.minimum(picks, len(members) - 1)]
    return out


def synthetic_events(
    catalog: pd.DataFrame, n_customers: int, n_events: int, rng: np.random.Generator
) -> pd.DataFrame:
    """Customers prefer 1-2 article types and a colour: 75% of their events come from there."""
    n = len(catalog)
    popularity = (1.0 / np.arange(1, n + 1) ** 0.8)[rng.permutation(n)]
    art = catalog["article_type"].to_numpy()
    colour = catalog["base_colour"].to_numpy()
    type_names, type_codes = np.unique(art, return_inverse=True)
    type_weight = np.bincount(type_codes, minlength=len(type_names)) ** 0.7
    activity = rng.lognormal(0.0, 0.8, size=n_customers)
    per_customer = rng.multinomial(n_events, activity / activity.sum())
    cust = np.repeat(np.arange(n_customers), per_customer)
    fav1 = rng.choice(len(type_names), size=n_customers, p=type_weight / type_weight.sum())
    fav2 = rng.choice(len(type_names), size=n_customers, p=type_weight / type_weight.sum())
    fav_colour = np.array(sorted(set(colour)))[rng.integers(len(set(colour)), size=n_customers)]
    preferred = rng.random(n_events) < 0.75
    pick_type = np.where(rng.random(n_events) < 0.6, fav1[cust], fav2[cust])
    with_colour = rng.random(n_events) < 0.5
    product = rng.choice(n, size=n_events, p=popularity / popularity.sum())
    by_type = pd.Series(np.arange(n)).groupby(type_codes).apply(lambda s: s.to_numpy())
    by_cell = pd.Series(np.arange(n)).groupby([type_codes, colour]).apply(lambda s: s.to_numpy())
    by_cell.index = [f"{t}|{c}" for t, c in by_cell.index]
    sel = preferred & ~with_colour
    drawn = _draw_within(by_type, pick_type[sel], popularity, rng)
    product[sel] = np.where(drawn >= 0, drawn, product[sel])
    sel = preferred & with_colour
    keys = np.char.add(np.char.add(pick_type[sel].astype(str), "|"), fav_colour[cust[sel]])
    drawn = _draw_within(by_cell, keys, popularity, rng)
    fallback = _draw_within(by_type, pick_type[sel], popularity, rng)
    product[sel] = np.where(drawn >= 0, drawn, fallback)
    kind = np.array(["view", "add_to_cart", "purchase"])[rng.choice(3, size=n_events, p=[0.8, 0.13, 0.07])]
    seconds = rng.integers(0, DAYS * 86400, size=n_events)
    return pd.DataFrame(
        {
            "customer_id": np.char.add("C", np.char.zfill(cust.astype(str), 6)),
            "product_id": catalog["id"].to_numpy()[product],
            "event_type": kind,
            "timestamp": (START + pd.to_timedelta(seconds, unit="s")).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )


def pandas_one_customer(
    customer: str,
    events: pd.DataFrame,
    values: pd.DataFrame,
    popularity: pd.Series,
    aff: AffinityParams,
    rec: RecommenderParams,
) -> list[int]:
    """The baseline: the on-the-fly definition in pandas, on frames already in memory."""
    ev = events.loc[events["customer_id"] == customer]
    age_days = (ev["timestamp"].max() - ev["timestamp"]).dt.total_seconds() / 86400.0
    w = ev["event_type"].map(aff.event_weights).fillna(0.0) * 0.5 ** (age_days / aff.half_life_days)
    touched = values.loc[values["product_id"].isin(ev["product_id"])].merge(
        pd.DataFrame({"product_id": ev["product_id"], "w": w}), on="product_id"
    )
    score = touched.groupby(["attribute", "value"])["w"].sum()
    share = score / score.groupby(level="attribute").transform("sum")
    contrib = (share * share.index.get_level_values("attribute").map(rec.weight)).rename("c").reset_index()
    matched = values.merge(contrib, on=["attribute", "value"]).groupby("product_id")["c"].sum()
    total = (popularity * rec.popularity_weight).add(matched, fill_value=0.0).round(9)
    total = total.drop(index=ev.loc[ev["event_type"] == "purchase", "product_id"], errors="ignore")
    frame = total.rename("s").reset_index().sort_values(["s", "product_id"], ascending=[False, True])
    return frame["product_id"].head(rec.k).tolist()


def _time(fn: Callable[[object], object], keys: list) -> tuple[float, float, float, list]:
    """Median and p95 wall time and median CPU time (this process, all threads) in ms, and results."""
    fn(keys[0])  # warm-up
    wall, cpu, results = [], [], []
    for key in keys:
        t, c = time.perf_counter(), time.process_time()
        results.append(fn(key))
        cpu.append((time.process_time() - c) * 1000)
        wall.append((time.perf_counter() - t) * 1000)
    wall.sort()
    return statistics.median(wall), wall[int(0.95 * (len(wall) - 1))], statistics.median(cpu), results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", type=int, default=44_000)
    ap.add_argument("--customers", type=int, default=50_000)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=50, help="customers sampled for the per-customer timings")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--similar", action="store_true", help="also build similar_products from 512-d embeddings"
    )
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary folder)")
    ap.add_argument("--threads", type=int, default=0, help="DuckDB threads for the per-customer queries")
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    root = args.dir or Path(tempfile.mkdtemp(prefix="bench_recs_"))
    root.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(root / "lake", ignore_errors=True)
    wh = Lake(f"sqlite:{root / 'lake' / 'catalog.sqlite'}", root / "lake" / "data")

    t = time.perf_counter()
    catalog = synthetic_catalog(args.products, rng)
    raw = synthetic_events(catalog, args.customers, args.events, rng)
    raw.to_parquet(root / "interactions.parquet", index=False)
    print(
        f"generated {len(catalog):,} products, {raw['customer_id'].nunique():,} customers, "
        f"{len(raw):,} events in {time.perf_counter() - t:.1f} s  ({root})"
    )
    publish_tables(wh, {"catalog": catalog})

    builds = {}
    t = time.perf_counter()
    step_interactions(wh, root / "interactions.parquet")
    builds["customer_interactions (read + validate + publish)"] = time.perf_counter() - t
    aff_params, rec_params = AffinityParams(), RecommenderParams()
    t = time.perf_counter()
    step_affinity(wh, aff_params)
    builds["customer_attribute_affinity (+ features, popularity)"] = time.perf_counter() - t
    t = time.perf_counter()
    rec = step_recommendations(wh, rec_params)
    builds["recommendations (+ hold-out evaluation of both)"] = time.perf_counter() - t
    if args.similar:
        emb = rng.standard_normal((len(catalog), 512)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        pa_table = pd.DataFrame({"product_id": catalog["id"].to_numpy(), "embedding": list(emb)})
        publish_tables(
            wh, {"product_attributes": pa_table}, casts={"product_attributes": {"embedding": "FLOAT[512]"}}
        )
        t = time.perf_counter()
        step_similar_products(wh)
        builds["similar_products (512-d, blocked matmul)"] = time.perf_counter() - t
    print("\nbuild times (each includes reading its inputs and one atomic publish):")
    for name, seconds in builds.items():
        print(f"  {name:<55} {seconds:7.1f} s")
    print(f"  {'total':<55} {sum(builds.values()):7.1f} s")
    print(f"  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    with reading(wh) as con:
        n_cells = con.execute("SELECT count(*) FROM cells").fetchall()[0][0]
    print(f"distinct attribute combinations (cells): {n_cells:,} (the real 44k catalog: 2,753)")
    print(f"\nrecommendations: {rec.counts['recommendations']:,} rows for {rec.customers:,} customers")
    print(rec.metrics[["recommender", "hit_rate", "ndcg", "customers"]].to_string(index=False))

    con = connect(wh, read_only=True)
    if args.threads:
        con.execute(f"SET threads = {int(args.threads)}").fetchall()
    customers = [
        r[0] for r in con.execute("SELECT DISTINCT customer_id FROM customer_interactions").fetchall()
    ]
    customers.sort()
    picks = np.random.default_rng(args.seed + 1).choice(len(customers), args.queries, replace=False)
    sample = [customers[i] for i in picks]
    events = con.execute(
        "SELECT customer_id, product_id, event_type, timestamp FROM customer_interactions"
    ).df()
    values = feature_values(con.execute("SELECT * FROM product_features").df())
    popularity = con.execute("SELECT product_id, popularity FROM product_popularity").df()
    popularity = popularity.set_index("product_id")["popularity"]

    def lookup(c: object) -> list:
        sql = "SELECT * FROM recommendations WHERE customer_id = $c ORDER BY rank"
        return con.execute(sql, {"c": c}).fetchall()

    def live(c: object) -> list:
        return con.execute("SELECT * FROM recommend_for($c)", {"c": c}).fetchall()

    def baseline(c: object) -> list:
        return pandas_one_customer(str(c), events, values, popularity, aff_params, rec_params)

    def similar(p: object) -> list:
        return con.execute("SELECT * FROM similar_to($p)", {"p": p}).fetchall()

    rows = [
        ("lookup in recommendations table (DuckDB)", *_time(lookup, sample)),
        ("on the fly: recommend_for() macro (DuckDB)", *_time(live, sample)),
        ("baseline: same on-the-fly scoring in pandas", *_time(baseline, sample)),
    ]
    if args.similar:
        ids = np.random.default_rng(args.seed + 2).choice(catalog["id"], args.queries, replace=False)
        rows.append(
            ("on the fly: similar_to() macro, 512-d (DuckDB)", *_time(similar, [int(p) for p in ids]))
        )
    threads = con.execute("SELECT current_setting('threads')").fetchall()[0][0]
    print(
        f"\none customer's top {rec_params.k}, {args.queries} customers, warm connection, "
        f"DuckDB threads={threads}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
        "(target < 50 ms):"
    )
    for name, median, p95, cpu, _ in rows:
        print(f"  {name:<48} median {median:7.2f} ms   p95 {p95:7.2f} ms   cpu {cpu:7.2f} ms")

    table, macro, pandas_lists = rows[0][4], rows[1][4], rows[2][4]
    same = sum(
        [r[2] for r in a] == [r[2] for r in b] and [r[6] for r in a] == [r[6] for r in b]
        for a, b in zip(table, macro)
    )
    same_pandas = sum([r[2] for r in a] == b for a, b in zip(table, pandas_lists))
    print(
        f"\nsame products and reasons, macro vs table: {same}/{len(sample)}; "
        f"same products, pandas vs table: {same_pandas}/{len(sample)}"
    )


if __name__ == "__main__":
    main()

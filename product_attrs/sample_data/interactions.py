"""Customer events (view, add_to_cart, purchase) driven by hidden attribute preferences.

Each customer has a gender, 1-2 favourite article types and 1-2 favourite colours. Most of their views
go to products matching those preferences, the rest follow overall popularity (a Zipf-like weight
per product), so an attribute-based recommender can beat a popularity baseline, and the preferences
written to ``customers.csv`` let it be scored on held-out events. Views lead to carts, carts to
purchases, so purchases < carts < views as in any shop.

Products come from ``styles.csv`` read with the ``csv`` module, tolerating the planted faults: a line
is usable when it has at least 10 fields and its first field is an integer id (extra fields belong to
the display name); a repeated id keeps its first line.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

END = datetime(2026, 6, 30, 23, 59, 59, tzinfo=timezone.utc)  # fixed, so files do not depend on today
DAYS = 120
EVENT_TYPES = ("view", "add_to_cart", "purchase")
P_CART = 0.22  # a view leads to add_to_cart
P_PURCHASE = 0.45  # an add_to_cart leads to a purchase
P_PREFERRED = 0.75  # a view is drawn from the customer's preferred products (else from popularity)
MEAN_VIEWS = 55  # per customer; ~20-25k events for 300 customers
_GENDERS_FOR = {"Men": ("Men", "Unisex"), "Women": ("Women", "Unisex")}


@dataclass(frozen=True)
class Item:
    id: int
    gender: str
    sub: str
    article: str
    colour: str


def read_products(styles_csv: Path) -> list[Item]:
    """Usable products of a (possibly faulty) Kaggle styles.csv, in file order, one per id."""
    items: dict[int, Item] = {}
    with open(styles_csv, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader, None)  # header
        for fields in reader:
            if len(fields) < 10 or not fields[0].strip().isdigit():
                continue
            pid = int(fields[0])
            if pid not in items:
                items[pid] = Item(pid, fields[1], fields[3], fields[4], fields[5])
    return list(items.values())


def _preferences(items: list[Item], rng: np.random.Generator, n_customers: int) -> list[dict]:
    """Latent preferences, drawn from what the catalog actually offers each gender."""
    customers = []
    for c in range(n_customers):
        gender = "Men" if rng.random() < 0.5 else "Women"
        offer = [it for it in items if it.gender in _GENDERS_FOR[gender]]
        arts = Counter(it.article for it in offer)
        names = sorted(arts)
        p = np.array([arts[n] for n in names], dtype=float) ** 0.7  # popular types are liked more often
        k = 1 + int(rng.random() < 0.5)
        liked = [
            names[i] for i in rng.choice(len(names), size=min(k, len(names)), replace=False, p=p / p.sum())
        ]
        colours = sorted({it.colour for it in offer if it.colour and it.colour != "NA"})
        kc = 1 + int(rng.random() < 0.5)
        liked_colours = [
            colours[i] for i in rng.choice(len(colours), size=min(kc, len(colours)), replace=False)
        ]
        subs = sorted({it.sub for it in offer if it.article in liked})
        customers.append(
            {
                "customer_id": f"C{c + 1:05d}",
                "gender": gender,
                "preferred_article_types": liked,
                "preferred_sub_categories": subs,
                "preferred_colours": liked_colours,
                "activity": float(rng.lognormal(0.0, 0.6)),
            }
        )
    return customers


def _timestamp(seconds_before_end: float) -> str:
    return (END - timedelta(seconds=int(seconds_before_end))).strftime("%Y-%m-%dT%H:%M:%SZ")


def generate_interactions(styles_csv: Path, out_dir: Path, n_customers: int = 300, seed: int = 0) -> dict:
    """Write ``interactions.csv`` and ``customers.csv`` under ``out_dir``; return a summary."""
    items = read_products(Path(styles_csv))
    if not items:
        raise ValueError(f"no usable product in {styles_csv}")
    rng = np.random.default_rng([seed, 7])
    popularity = 1.0 / np.arange(1, len(items) + 1) ** 0.8
    popularity = popularity[rng.permutation(len(items))]
    popularity /= popularity.sum()
    customers = _preferences(items, rng, n_customers)

    ids = np.array([it.id for it in items])
    events: list[tuple[int, str, int, str]] = []  # (seconds before END, customer, product, type)
    span = DAYS * 86400
    for cust in customers:
        allowed = np.array([it.gender in _GENDERS_FOR[cust["gender"]] for it in items])
        liked = np.array([it.article in cust["preferred_article_types"] for it in items]) & allowed
        weight = (
            popularity * liked * np.where([it.colour in cust["preferred_colours"] for it in items], 4.0, 1.0)
        )
        pref_p = weight / weight.sum() if weight.sum() > 0 else None
        n_views = max(1, int(rng.poisson(MEAN_VIEWS * cust["activity"])))
        from_pref = rng.random(n_views) < P_PREFERRED if pref_p is not None else np.zeros(n_views, bool)
        picks = rng.choice(len(items), size=n_views, p=popularity)
        if from_pref.any():
            picks[from_pref] = rng.choice(len(items), size=int(from_pref.sum()), p=pref_p)
        times = rng.uniform(3600, span, size=n_views)
        carted = rng.random(n_views) < P_CART
        bought = carted & (rng.random(n_views) < P_PURCHASE)
        cart_gap = rng.uniform(20, 900, size=n_views)  # later events are fewer seconds before END
        buy_gap = rng.uniform(60, 2400, size=n_views)
        for k, t, c, b, g1, g2 in zip(picks, times, carted, bought, cart_gap, buy_gap):
            pid = int(ids[k])
            events.append((float(t), cust["customer_id"], pid, "view"))
            if c:
                events.append((float(t - g1), cust["customer_id"], pid, "add_to_cart"))
            if b:
                events.append((float(t - g1 - g2), cust["customer_id"], pid, "purchase"))

    order = {e: i for i, e in enumerate(EVENT_TYPES)}
    events.sort(key=lambda e: (-int(e[0]), e[1], order[e[3]], e[2]))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "interactions.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["customer_id", "product_id", "event_type", "timestamp"])
        w.writerows([c, p, kind, _timestamp(t)] for t, c, p, kind in events)
    with open(out_dir / "customers.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(
            [
                "customer_id",
                "gender",
                "preferred_article_types",
                "preferred_sub_categories",
                "preferred_colours",
                "activity",
            ]
        )
        for c in customers:
            w.writerow(
                [
                    c["customer_id"],
                    c["gender"],
                    "|".join(c["preferred_article_types"]),
                    "|".join(c["preferred_sub_categories"]),
                    "|".join(c["preferred_colours"]),
                    f"{c['activity']:.4f}",
                ]
            )
    counts = Counter(e[3] for e in events)
    return {
        "seed": seed,
        "n_customers": n_customers,
        "n_products": len(items),
        "n_products_with_events": len({e[2] for e in events}),
        "n_events": len(events),
        "event_counts": {k: counts.get(k, 0) for k in EVENT_TYPES},
        "start": _timestamp(span),
        "end": END.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }

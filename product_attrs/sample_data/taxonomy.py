"""The demo catalog's vocabulary, taken from the real Fashion Product Images catalog.

Names are real (masterCategory/subCategory/articleType triples as they appear in the Kaggle
``styles.csv``) so that code written against the demo reads the same as code for the real file.
Frequencies are long-tailed on purpose: the 20 most frequent article types hold ~94% of rows and the
last six hold few (two fewer than 10 at the default size), so a "top-20 / rest" split means something.
"""

from __future__ import annotations

from dataclasses import dataclass

STYLES_HEADER = [
    "id",
    "gender",
    "masterCategory",
    "subCategory",
    "articleType",
    "baseColour",
    "season",
    "year",
    "usage",
    "productDisplayName",
]


@dataclass(frozen=True)
class ArticleType:
    """One article type: its place in the hierarchy, relative frequency and how it looks and is named."""

    name: str
    master: str
    sub: str
    weight: int  # rows at the default size of 1200 products
    genders: tuple[str, ...]
    usages: tuple[str, ...]  # first one is the most common
    texture: str  # main texture drawn on the silhouette (see drawing.TEXTURES)
    words: tuple[str, ...]  # nouns used in productDisplayName
    brands: tuple[str, ...]


_APPAREL_BRANDS = (
    "Nike",
    "Puma",
    "Adidas",
    "Peter England",
    "Turtle",
    "Wrangler",
    "Levis",
    "United Colors of Benetton",
    "Mango",
    "Jealous 21",
    "Fabindia",
    "Scullers",
)
_FOOTWEAR_BRANDS = (
    "Nike",
    "Puma",
    "Adidas",
    "Reebok",
    "Catwalk",
    "Bata",
    "Woodland",
    "Red Tape",
    "Crocs",
    "Carlton London",
)
_ACCESSORY_BRANDS = (
    "Titan",
    "Fastrack",
    "Timex",
    "Baggit",
    "Lavie",
    "Wildcraft",
    "Ray-Ban",
    "Hidesign",
    "Tommy Hilfiger",
)
_CARE_BRANDS = ("Davidoff", "Nivea", "Axe", "Adidas", "Playboy", "Denver")

_ALL = ("Men", "Women", "Boys", "Girls", "Unisex")
_ADULT = ("Men", "Women")
_FEM = ("Women", "Girls")

ARTICLE_TYPES: tuple[ArticleType, ...] = (
    # --- the 20 frequent types (1125 of 1200 rows) ---
    ArticleType(
        "Tshirts",
        "Apparel",
        "Topwear",
        150,
        _ALL,
        ("Casual", "Sports"),
        "plain",
        ("Tshirt", "T-shirt", "Polo Tshirt"),
        _APPAREL_BRANDS,
    ),
    ArticleType(
        "Shirts",
        "Apparel",
        "Topwear",
        100,
        _ADULT + ("Boys",),
        ("Casual", "Formal", "Smart Casual"),
        "checks",
        ("Shirt", "Casual Shirt", "Formal Shirt"),
        _APPAREL_BRANDS,
    ),
    ArticleType(
        "Casual Shoes",
        "Footwear",
        "Shoes",
        95,
        _ALL,
        ("Casual",),
        "plain",
        ("Casual Shoes", "Sneakers", "Canvas Shoes"),
        _FOOTWEAR_BRANDS,
    ),
    ArticleType(
        "Watches",
        "Accessories",
        "Watches",
        90,
        ("Men", "Women", "Unisex"),
        ("Casual", "Formal"),
        "plain",
        ("Watch", "Analog Watch", "Chronograph Watch"),
        _ACCESSORY_BRANDS,
    ),
    ArticleType(
        "Sports Shoes",
        "Footwear",
        "Shoes",
        75,
        _ALL,
        ("Sports",),
        "plain",
        ("Sports Shoes", "Running Shoes", "Training Shoes"),
        _FOOTWEAR_BRANDS,
    ),
    ArticleType(
        "Kurtas",
        "Apparel",
        "Topwear",
        65,
        _ADULT,
        ("Ethnic",),
        "dots",
        ("Kurta", "Printed Kurta"),
        _APPAREL_BRANDS,
    ),
    ArticleType(
        "Tops",
        "Apparel",
        "Topwear",
        62,
        _FEM,
        ("Casual", "Party"),
        "hstripes",
        ("Top", "Tank Top"),
        _APPAREL_BRANDS,
    ),
    ArticleType(
        "Handbags",
        "Accessories",
        "Bags",
        62,
        ("Women",),
        ("Casual", "Formal"),
        "plain",
        ("Handbag", "Tote Bag", "Shoulder Bag"),
        _ACCESSORY_BRANDS,
    ),
    ArticleType(
        "Heels",
        "Footwear",
        "Shoes",
        50,
        ("Women",),
        ("Casual", "Party"),
        "plain",
        ("Heels", "Stilettos", "Pumps"),
        _FOOTWEAR_BRANDS,
    ),
    ArticleType(
        "Sunglasses",
        "Accessories",
        "Eyewear",
        45,
        ("Men", "Women", "Unisex"),
        ("Casual",),
        "plain",
        ("Sunglasses", "Aviator Sunglasses"),
        _ACCESSORY_BRANDS,
    ),
    ArticleType(
        "Belts",
        "Accessories",
        "Belts",
        40,
        ("Men", "Women", "Unisex"),
        ("Casual", "Formal"),
        "plain",
        ("Belt", "Leather Belt"),
        _ACCESSORY_BRANDS,
    ),
    ArticleType(
        "Sandals",
        "Footwear",
        "Sandal",
        40,
        _ALL,
        ("Casual",),
        "plain",
        ("Sandals", "Floaters"),
        _FOOTWEAR_BRANDS,
    ),
    ArticleType(
        "Backpacks",
        "Accessories",
        "Bags",
        38,
        ("Unisex", "Men", "Women"),
        ("Casual", "Travel"),
        "plain",
        ("Backpack", "Laptop Backpack"),
        _ACCESSORY_BRANDS,
    ),
    ArticleType(
        "Formal Shoes",
        "Footwear",
        "Shoes",
        35,
        ("Men",),
        ("Formal",),
        "plain",
        ("Formal Shoes", "Derby Shoes", "Oxford Shoes"),
        _FOOTWEAR_BRANDS,
    ),
    ArticleType(
        "Jeans",
        "Apparel",
        "Bottomwear",
        33,
        _ALL,
        ("Casual",),
        "diagonal",
        ("Jeans", "Slim Fit Jeans"),
        _APPAREL_BRANDS,
    ),
    ArticleType(
        "Perfume and Body Mist",
        "Personal Care",
        "Fragrance",
        32,
        ("Men", "Women", "Unisex"),
        ("Casual",),
        "plain",
        ("Perfume", "Eau de Parfum", "Body Mist"),
        _CARE_BRANDS,
    ),
    ArticleType(
        "Shorts",
        "Apparel",
        "Bottomwear",
        30,
        _ALL,
        ("Casual", "Sports"),
        "plain",
        ("Shorts", "Bermuda Shorts"),
        _APPAREL_BRANDS,
    ),
    ArticleType(
        "Trousers",
        "Apparel",
        "Bottomwear",
        30,
        _ADULT,
        ("Formal", "Casual"),
        "plain",
        ("Trousers", "Formal Trousers", "Chinos"),
        _APPAREL_BRANDS,
    ),
    ArticleType(
        "Dresses",
        "Apparel",
        "Dress",
        28,
        _FEM,
        ("Casual", "Party"),
        "dots",
        ("Dress", "Maxi Dress"),
        _APPAREL_BRANDS,
    ),
    ArticleType(
        "Jackets",
        "Apparel",
        "Topwear",
        25,
        _ALL,
        ("Casual",),
        "plain",
        ("Jacket", "Windcheater"),
        _APPAREL_BRANDS,
    ),
    # --- the long tail (75 of 1200 rows; Skirts and Free Gifts have fewer than 10) ---
    ArticleType(
        "Deodorant",
        "Personal Care",
        "Fragrance",
        22,
        ("Men", "Women"),
        ("Casual",),
        "plain",
        ("Deodorant", "Deo Spray"),
        _CARE_BRANDS,
    ),
    ArticleType(
        "Track Pants",
        "Apparel",
        "Bottomwear",
        18,
        _ALL,
        ("Sports",),
        "plain",
        ("Track Pants", "Joggers"),
        _APPAREL_BRANDS,
    ),
    ArticleType(
        "Sweatshirts",
        "Apparel",
        "Topwear",
        14,
        _ALL,
        ("Casual", "Sports"),
        "plain",
        ("Sweatshirt", "Hooded Sweatshirt"),
        _APPAREL_BRANDS,
    ),
    ArticleType(
        "Clutches",
        "Accessories",
        "Bags",
        10,
        ("Women",),
        ("Party", "Casual"),
        "plain",
        ("Clutch", "Party Clutch"),
        _ACCESSORY_BRANDS,
    ),
    ArticleType(
        "Skirts",
        "Apparel",
        "Bottomwear",
        7,
        _FEM,
        ("Casual",),
        "vstripes",
        ("Skirt", "Flared Skirt"),
        _APPAREL_BRANDS,
    ),
    ArticleType(
        "Free Gifts",
        "Free Items",
        "Free Gifts",
        4,
        ("Unisex", "Men", "Women"),
        ("Casual",),
        "plain",
        ("Free Gift", "Gift Set"),
        _CARE_BRANDS,
    ),
)
ARTICLES_BY_NAME: dict[str, ArticleType] = {a.name: a for a in ARTICLE_TYPES}

#: baseColour -> RGB, with the real catalog's rough frequency order (Black most common).
COLOURS: dict[str, tuple[int, int, int]] = {
    "Black": (28, 28, 30),
    "White": (248, 248, 246),
    "Blue": (40, 95, 205),
    "Brown": (120, 72, 38),
    "Grey": (128, 128, 128),
    "Red": (205, 30, 40),
    "Green": (35, 140, 60),
    "Pink": (240, 128, 170),
    "Navy Blue": (24, 34, 92),
    "Purple": (122, 48, 150),
    "Silver": (192, 192, 204),
    "Yellow": (242, 208, 36),
}
COLOUR_WEIGHTS: dict[str, float] = {
    "Black": 0.20,
    "White": 0.12,
    "Blue": 0.11,
    "Brown": 0.08,
    "Grey": 0.07,
    "Red": 0.07,
    "Green": 0.06,
    "Pink": 0.06,
    "Navy Blue": 0.06,
    "Purple": 0.05,
    "Silver": 0.05,
    "Yellow": 0.07,
}

SEASONS = ("Summer", "Fall", "Winter", "Spring")
SEASON_WEIGHTS = (0.48, 0.26, 0.19, 0.07)
WARM_TYPES = frozenset({"Jackets", "Sweatshirts"})  # mostly Fall/Winter

YEARS = tuple(range(2008, 2018))  # both even and odd years: the seed's split is even=train, odd=test
YEAR_WEIGHTS = (0.05, 0.07, 0.10, 0.16, 0.16, 0.13, 0.10, 0.09, 0.08, 0.06)

#: Words put in names for a visible texture, so text and image agree as in real product names.
TEXTURE_WORDS: dict[str, tuple[str, ...]] = {
    "plain": ("Solid", ""),
    "checks": ("Checked", "Check"),
    "hstripes": ("Striped",),
    "vstripes": ("Striped",),
    "dots": ("Printed", "Polka Dot"),
    "diagonal": ("Washed", ""),
}

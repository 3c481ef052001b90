"""The synthetic SKU world: 30 products (5 variants of each of the 6 shelf classes) and how each looks.

Product recognition needs more than the detector's 6 classes: it matches each detected product to one
SKU of a catalog gallery. So every shelf class (the coarse label) has 5 SKUs (the fine label), drawn
as the class's shape and base colour plus a SKU's own label design: a label colour, a logo mark (a
circle, square, triangle, diamond or two bars) in a mark colour, which on boxes and bottles also
colours the top band or cap. The label colour covers a large part of the product, so SKUs stay
distinguishable at the shelf photos' 20-70 px; the mark separates them at catalog size.

The same drawing serves three pictures: products on the shelf scenes (``draw_sku``), the clean catalog
image of a SKU (``render_iconic``) and an in-store phone photo of it (``render_photo``), so a model
that learns one can be tested on the others.

Everything random comes from the ``numpy.random.Generator`` passed in: same state, same picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from product_attrs.sample_data.drawing import jitter_rgb

RGB = tuple[int, int, int]
MARKS = ("circle", "square", "triangle", "diamond", "bars")


@dataclass(frozen=True)
class ProductClass:
    id: int
    name: str
    w: tuple[int, int]  # width range on the shelf pictures, px (inclusive)
    h: tuple[int, int]
    colour: tuple[int, int, int]


#: The shelf classes. Non-contiguous ids on purpose: a detector must map them to contiguous labels and back.
CATEGORIES: tuple[ProductClass, ...] = (
    ProductClass(3, "cereal_box", (28, 40), (45, 68), (236, 120, 30)),
    ProductClass(7, "soda_can", (20, 26), (30, 42), (200, 24, 34)),
    ProductClass(12, "water_bottle", (18, 26), (50, 70), (120, 192, 236)),
    ProductClass(25, "milk_carton", (26, 34), (45, 62), (246, 246, 246)),
    ProductClass(40, "jar", (32, 44), (28, 40), (200, 140, 40)),
    ProductClass(51, "chips_bag", (34, 48), (38, 54), (40, 170, 70)),
)
CATEGORY_NAMES: dict[int, str] = {c.id: c.name for c in CATEGORIES}
CLASSES_BY_NAME: dict[str, ProductClass] = {c.name: c for c in CATEGORIES}


@dataclass(frozen=True)
class Sku:
    name: str  # the fine label, Grocery-Store-Dataset style ("Sunny-Corn-Flakes")
    coarse: str  # the shelf class ("cereal_box"): the coarse label
    fine_id: int
    coarse_id: int  # index of the class in CATEGORIES
    category_id: int  # the class's COCO id on the shelf scenes
    label: RGB  # colour of the label: the cue that survives at 20 px
    mark: str  # logo shape on the label, one of MARKS
    mark_colour: RGB
    description: str

    @property
    def cls(self) -> ProductClass:
        return CLASSES_BY_NAME[self.coarse]


_YELLOW, _RED, _BLUE, _GREEN = (250, 215, 40), (210, 40, 40), (40, 80, 200), (40, 150, 60)
_BLACK, _WHITE, _CREAM, _PURPLE = (30, 30, 30), (248, 248, 248), (250, 246, 220), (130, 50, 160)
_PINK, _BROWN, _ORANGE = (240, 110, 170), (120, 70, 30), (240, 130, 20)
_SKY, _NAVY = (150, 190, 230), (20, 40, 140)

#: Per class: (name, label colour, mark, mark colour, what it is). Label colours differ within a class
#: and from the class's base colour; each class uses all five marks once.
_DESIGNS: dict[str, tuple[tuple[str, RGB, str, RGB, str], ...]] = {
    "cereal_box": (
        ("Sunny-Corn-Flakes", _CREAM, "circle", _RED, "Crisp golden corn flakes for a quick breakfast."),
        ("Morning-Oat-Crunch", _BLUE, "square", _YELLOW, "Baked oat clusters with a light honey crunch."),
        ("Choco-Puffs", _BROWN, "triangle", _WHITE, "Puffed grain balls coated in cocoa."),
        ("Green-Valley-Muesli", _GREEN, "diamond", _CREAM, "Rolled oats, nuts and dried fruit, no sugar."),
        ("Honey-Rings", _BLACK, "bars", _YELLOW, "Whole grain rings sweetened with honey."),
    ),
    "soda_can": (
        ("Fizz-Cola", _WHITE, "circle", _RED, "Classic cola in a 33 cl can."),
        ("Fizz-Lemon-Soda", _YELLOW, "square", _GREEN, "Sparkling lemon soda in a 33 cl can."),
        ("Night-Energy-Drink", _BLACK, "triangle", _YELLOW, "Energy drink with caffeine and taurine."),
        ("Arctic-Tonic", _SKY, "diamond", _NAVY, "Dry tonic water with quinine."),
        ("Garden-Apple-Cider", _GREEN, "bars", _WHITE, "Sparkling apple cider, alcohol free."),
    ),
    "water_bottle": (
        ("Alpine-Spring-Water", _WHITE, "circle", _BLUE, "Still spring water from the mountains, 50 cl."),
        ("Alpine-Sparkling-Water", _NAVY, "square", _WHITE, "Sparkling mineral water, 50 cl."),
        ("Citrus-Water", _YELLOW, "triangle", _ORANGE, "Still water with a hint of lemon and lime."),
        ("Berry-Water", _PINK, "diamond", _PURPLE, "Still water flavoured with raspberry."),
        ("Sport-Water", _GREEN, "bars", _BLACK, "Water with electrolytes in a sports cap bottle."),
    ),
    "milk_carton": (
        ("Farm-Whole-Milk", _BLUE, "circle", _WHITE, "Whole milk, 3 % fat, 1 litre."),
        ("Farm-Skim-Milk", _RED, "square", _WHITE, "Skimmed milk, 0.1 % fat, 1 litre."),
        ("Oat-Drink", _GREEN, "triangle", _YELLOW, "Oat drink, enriched with calcium and vitamins."),
        ("Chocolate-Milk", _BROWN, "diamond", _CREAM, "Chocolate flavoured milk drink."),
        ("Lactose-Free-Milk", _PURPLE, "bars", _WHITE, "Lactose free semi-skimmed milk, 1 litre."),
    ),
    "jar": (
        ("Strawberry-Jam", _RED, "circle", _WHITE, "Strawberry jam with 50 % fruit."),
        ("Peanut-Butter", _CREAM, "square", _BROWN, "Smooth peanut butter, no added oil."),
        ("Wild-Honey", _BLACK, "triangle", _YELLOW, "Set wildflower honey."),
        ("Dill-Pickles", _GREEN, "diamond", _WHITE, "Pickled gherkins with dill."),
        ("Tomato-Pasta-Sauce", _BLUE, "bars", _RED, "Tomato and basil pasta sauce."),
    ),
    "chips_bag": (
        ("Crispy-Salted-Chips", _YELLOW, "circle", _RED, "Potato chips with sea salt."),
        ("Crispy-Paprika-Chips", _RED, "square", _YELLOW, "Potato chips with paprika seasoning."),
        ("Crispy-Sour-Cream-Chips", _BLUE, "triangle", _WHITE, "Potato chips with sour cream and onion."),
        ("Crispy-Salt-Vinegar-Chips", _WHITE, "diamond", _BLUE, "Potato chips with salt and vinegar."),
        ("Cheese-Puffs", _ORANGE, "bars", _BLACK, "Baked corn puffs with cheese."),
    ),
}


def _build_skus() -> tuple[Sku, ...]:
    skus: list[Sku] = []
    for coarse_id, cls in enumerate(CATEGORIES):
        for name, label, mark, mark_colour, description in _DESIGNS[cls.name]:
            skus.append(
                Sku(name, cls.name, len(skus), coarse_id, cls.id, label, mark, mark_colour, description)
            )
    return tuple(skus)


#: All SKUs in fine-id order (class by class, in CATEGORIES order).
SKUS: tuple[Sku, ...] = _build_skus()
SKUS_BY_NAME: dict[str, Sku] = {s.name: s for s in SKUS}
SKUS_BY_CLASS: dict[str, tuple[Sku, ...]] = {
    c.name: tuple(s for s in SKUS if s.coarse == c.name) for c in CATEGORIES
}


def sku_records() -> list[dict]:
    """The SKU list as written to ``skus.json``: fine and coarse names and ids, and the COCO category id."""
    return [
        {
            "sku": s.name,
            "fine_id": s.fine_id,
            "coarse": s.coarse,
            "coarse_id": s.coarse_id,
            "category_id": s.category_id,
        }
        for s in SKUS
    ]


# --- drawing -------------------------------------------------------------------------------------

Draw = ImageDraw.ImageDraw


def _draw_mark(draw: Draw, sku: Sku, x0: int, y0: int, x1: int, y1: int, colour: RGB) -> None:
    """The SKU's logo centred in the label rectangle (inclusive corners), sized to its shorter side."""
    lw, lh = x1 - x0 + 1, y1 - y0 + 1
    if sku.mark == "bars":  # two stripes across the whole label: visible even when the label is tiny
        t = max(1, lh // 6)
        for yy in (y0 + lh // 4, y0 + 3 * lh // 4 - t):
            draw.rectangle((x0, yy, x1, yy + t - 1), fill=colour)
        return
    s = max(3, int(min(lw, lh) * 0.6))
    cx, cy = x0 + lw / 2, y0 + lh / 2
    a, b, c, d = cx - s / 2, cy - s / 2, cx + s / 2 - 1, cy + s / 2 - 1
    if sku.mark == "circle":
        draw.ellipse((a, b, c, d), fill=colour)
    elif sku.mark == "square":
        draw.rectangle((a, b, c, d), fill=colour)
    elif sku.mark == "triangle":
        draw.polygon([(cx, b), (c, d), (a, d)], fill=colour)
    elif sku.mark == "diamond":
        draw.polygon([(cx, b), (c, cy), (cx, d), (a, cy)], fill=colour)
    else:  # pragma: no cover - MARKS is closed
        raise ValueError(sku.mark)


def _label(
    draw: Draw, sku: Sku, box: tuple[int, int, int, int], colour: RGB, mark: RGB, ellipse: bool = False
) -> None:
    """The SKU's label (a rectangle or an oval) with its mark inside."""
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return
    if ellipse:
        draw.ellipse(box, fill=colour)
        dx, dy = (x1 - x0) // 5, (y1 - y0) // 5  # the mark stays inside the oval
        _draw_mark(draw, sku, x0 + dx, y0 + dy, x1 - dx, y1 - dy, mark)
    else:
        draw.rectangle(box, fill=colour)
        _draw_mark(draw, sku, x0, y0, x1, y1, mark)


def draw_sku(
    draw: Draw | Image.Image,
    sku: Sku,
    x: int,
    y: int,
    w: int,
    h: int,
    rng: np.random.Generator | None = None,
    body: RGB | None = None,
) -> None:
    """Draw ``sku`` filling exactly the box (x, y, w, h): the box is the tight extent of the drawing.

    ``body`` is the (already jittered) body colour; without it the class colour is jittered with ``rng``.
    ``rng=None`` draws the exact catalog colours (iconic images); otherwise the label's print varies a
    little, as it does between real packages.
    """
    if isinstance(draw, Image.Image):
        draw = ImageDraw.Draw(draw)
    cls = sku.cls
    if body is None:
        body = cls.colour if rng is None else jitter_rgb(cls.colour, rng, 14)
    label = sku.label if rng is None else jitter_rgb(sku.label, rng, 6)
    mark = sku.mark_colour if rng is None else jitter_rgb(sku.mark_colour, rng, 6)
    x1, y1 = x + w - 1, y + h - 1
    edge = tuple(int(c * 0.45) for c in body)
    if cls.name == "cereal_box":
        draw.rectangle((x, y, x1, y1), fill=body, outline=edge)
        draw.rectangle((x, y, x1, y + h // 6), fill=mark)
        _label(draw, sku, (x + w // 6, y + h // 3, x1 - w // 6, y + 3 * h // 4), label, mark)
    elif cls.name == "soda_can":
        rim = max(1, h // 18)
        draw.rounded_rectangle((x, y, x1, y1), radius=w // 4, fill=body, outline=edge)
        draw.rectangle((x + 1, y + rim, x1 - 1, y + 2 * rim), fill=(200, 200, 210))
        draw.rectangle((x + 1, y1 - 2 * rim, x1 - 1, y1 - rim), fill=(200, 200, 210))
        _label(draw, sku, (x + w // 8, y + h // 4, x1 - w // 8, y1 - h // 4), label, mark, ellipse=True)
    elif cls.name == "water_bottle":
        neck = max(4, w * 2 // 5)
        nx = x + (w - neck) // 2
        draw.rectangle((nx, y, nx + neck - 1, y + h // 10), fill=mark)  # the cap
        draw.rectangle((nx, y + h // 10, nx + neck - 1, y + h // 4), fill=body)
        draw.rounded_rectangle((x, y + h // 4 - 2, x1, y1), radius=w // 4, fill=body, outline=(60, 120, 170))
        _label(draw, sku, (x + 1, y + 2 * h // 5, x1 - 1, y + 2 * h // 5 + h // 4), label, mark)
    elif cls.name == "milk_carton":
        gable = h // 5
        draw.polygon([(x, y + gable), (x + w // 2, y), (x1, y + gable)], fill=(225, 225, 230), outline=edge)
        draw.rectangle((x, y + gable, x1, y1), fill=body, outline=(120, 120, 130))
        _label(draw, sku, (x + 1, y + 2 * h // 5, x1 - 1, y + 2 * h // 5 + h // 3), label, mark)
    elif cls.name == "jar":
        lid = max(5, h // 4)
        inset = max(3, w // 8)
        draw.rectangle((x, y, x1, y + lid), fill=(70, 44, 22))
        draw.rounded_rectangle((x + 2, y + lid, x1 - 2, y1), radius=w // 6, fill=body, outline=edge)
        _label(draw, sku, (x + inset, y + lid + h // 8, x1 - inset, y1 - h // 8), label, mark)
    elif cls.name == "chips_bag":
        crimp = max(2, h // 11)
        step = max(2, w // 13)
        draw.rectangle((x, y + crimp, x1, y1 - crimp), fill=body, outline=edge)
        teeth = [(i, crimp if (i // step) % 2 else 0) for i in range(0, w, step)]
        top = [(x + i, y + d) for i, d in teeth] + [(x1, y + crimp)]
        bot = [(x + i, y1 - d) for i, d in teeth] + [(x1, y1 - crimp)]
        draw.polygon([(x, y + crimp), *top, (x1, y + crimp)], fill=body)
        draw.polygon([(x, y1 - crimp), *bot, (x1, y1 - crimp)], fill=body)
        _label(draw, sku, (x + w // 6, y + h // 5, x1 - w // 6, y1 - h // 5), label, mark, ellipse=True)
    else:  # pragma: no cover - CATEGORIES is closed
        raise ValueError(cls.name)


def _aspect(sku: Sku) -> float:
    """Width / height of the SKU's class at the middle of its shelf size ranges."""
    cls = sku.cls
    return (cls.w[0] + cls.w[1]) / (cls.h[0] + cls.h[1])


def _product_size(sku: Sku, height: float) -> tuple[int, int]:
    return max(4, int(round(height * _aspect(sku)))), max(6, int(round(height)))


def render_iconic(sku: Sku, size: int = 128) -> Image.Image:
    """The catalog image of ``sku``: the clean product centred on white, like a shop's packshot."""
    scale = 4  # drawn big and downsampled: anti-aliased edges like a real packshot
    canvas = size * scale
    img = Image.new("RGB", (canvas, canvas), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    w, h = _product_size(sku, canvas * 0.78)
    if w > canvas * 0.78:  # wide products (jars) fit by width instead
        w, h = int(canvas * 0.78), int(canvas * 0.78 / _aspect(sku))
    x, y = (canvas - w) // 2, (canvas - h) // 2
    shadow = (x - w // 10, y + h - h // 30, x + w + w // 10, y + h + h // 25)
    draw.ellipse(shadow, fill=(232, 232, 232))
    draw_sku(draw, sku, x, y, w, h)
    return img.resize((size, size), Image.Resampling.LANCZOS)


def _clutter(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """A store background: a wall or shelf tone, shelf edges and out-of-focus packages of no SKU."""
    top, bottom = (
        np.asarray(jitter_rgb(c, rng, 30), dtype=np.float32) for c in ((200, 196, 188), (150, 140, 128))
    )
    ramp = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    arr = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (h, w, 3))
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(0, 3))):  # shelf edges
        by = int(rng.integers(0, h))
        thick = int(rng.integers(h // 40 + 1, h // 12 + 2))
        draw.rectangle((0, by, w, by + thick), fill=jitter_rgb((110, 80, 50), rng, 30))
    for _ in range(int(rng.integers(3, 9))):  # other packages, boxes and tins
        cw, ch = int(rng.integers(w // 8, w // 3)), int(rng.integers(h // 6, h // 2))
        cx, cy = int(rng.integers(-cw // 2, w)), int(rng.integers(-ch // 2, h))
        colour = tuple(int(v) for v in rng.integers(30, 240, size=3))
        if rng.random() < 0.5:
            draw.rectangle((cx, cy, cx + cw, cy + ch), fill=colour)
        else:
            draw.ellipse((cx, cy, cx + cw, cy + ch), fill=colour)
    return img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(1.0, 3.0)) * w / 256))


def _group_layer(sku: Sku, rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """1-3 items of ``sku`` side by side (often touching, one maybe in front) on a transparent layer."""
    n = int(rng.choice([1, 1, 1, 2, 2, 3]))
    height = float(rng.uniform(0.45, 0.85)) * h / (1 + 0.25 * (n - 1))
    pw, ph = _product_size(sku, height)
    if pw * n > 0.95 * w:  # wide products in a group: shrink to fit the frame
        pw, ph = _product_size(sku, height * 0.95 * w / (pw * n))
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    gap = int(pw * float(rng.uniform(-0.1, 0.15)))
    span = n * pw + (n - 1) * gap
    x0 = int((w - span) / 2 + rng.uniform(-0.15, 0.15) * w)
    base = int((h + ph) / 2 + rng.uniform(-0.12, 0.12) * h)
    body = jitter_rgb(sku.cls.colour, rng, 10)  # one production batch: the same body colour
    order = list(range(n))
    if n > 1 and rng.random() < 0.5:
        order.reverse()  # which neighbour overlaps which
    for i in order:
        dy = int(rng.integers(-ph // 12, ph // 12 + 1))
        draw_sku(draw, sku, x0 + i * (pw + gap), base - ph + dy, pw, ph, rng, body=body)
    return layer


def _tilted(layer: Image.Image, angle: float) -> Image.Image:
    """``layer`` turned by ``angle`` degrees about its content's centre (turning only the content is fast)."""
    bbox = layer.getbbox()
    if bbox is None:
        return layer
    part = layer.crop(bbox).rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)
    cx, cy = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
    out = Image.new("RGBA", layer.size, (0, 0, 0, 0))
    # A plain copy, no blending: ``out`` is empty.
    out.paste(part, (int(round(cx - part.width / 2)), int(round(cy - part.height / 2))))
    return out


def render_photo(sku: Sku, rng: np.random.Generator, size: int | tuple[int, int] = 128) -> Image.Image:
    """A phone photo of ``sku`` in a store: the item or a small group of it on a cluttered background.

    Random scale, position, small rotation, lighting and colour cast, blur and sensor noise, as in the
    Grocery Store Dataset's photos. ``size`` is a side or ``(width, height)``.
    """
    width, height = (size, size) if isinstance(size, int) else size
    scale = 2
    w, h = width * scale, height * scale
    # The background is out of focus anyway: drawn at the final size, only the products at 2x.
    img = _clutter(rng, width, height).resize((w, h), Image.Resampling.BILINEAR).convert("RGBA")
    img.alpha_composite(_tilted(_group_layer(sku, rng, w, h), float(rng.uniform(-12, 12))))
    img = img.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
    img = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.7, 1.25)))
    img = ImageEnhance.Contrast(img).enhance(float(rng.uniform(0.8, 1.15)))
    blur = float(rng.uniform(0.0, 1.0))
    if blur > 0.4:  # some photos are a little out of focus or shaken
        img = img.filter(ImageFilter.GaussianBlur(radius=blur))
    cast = rng.uniform(0.9, 1.1, size=3).astype(np.float32)  # white balance
    noise = rng.normal(0.0, float(rng.uniform(2, 6)), size=(height, width, 3))
    arr = np.asarray(img, dtype=np.float32) * cast + noise
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")

"""Draw a catalog-style product picture (60x80, light background) for one article type and colour.

Each article type has its own silhouette (a T shape for T-shirts, two legs for trousers, a shoe profile,
a round watch face on a strap, ...) and a main texture; the fill colour is the baseColour. Position,
scale, rotation, background tone and pixel noise are jittered so a classifier has to learn the shape
rather than memorise pixels, yet a small CNN separates the classes within a few CPU minutes.

Drawing happens at 2x and is downsampled, so edges are anti-aliased like a real JPEG thumbnail.
Everything random comes from the ``numpy.random.Generator`` passed in, in a fixed order: same
generator state, same picture.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps

WIDTH, HEIGHT = 60, 80  # the real catalog's thumbnails: width 60, height 80
_SCALE = 2
TEXTURES = ("plain", "hstripes", "vstripes", "checks", "dots", "diagonal")

RGB = tuple[int, int, int]
# A primitive in unit coordinates of the shape's box; the last item of an accent is its colour role.
Prim = tuple


@dataclass(frozen=True)
class Shape:
    box: tuple[float, float, float, float]  # where the shape sits, as fractions of the frame
    body: tuple[Prim, ...]  # filled with the (textured) base colour
    accents: tuple[Prim, ...] = field(default=())  # details drawn on top, with a colour role
    flip: bool = False  # may be mirrored (shoes point either way in real catalogs)


_TOP_T = (
    (0.32, 0),
    (0.68, 0),
    (1, 0.16),
    (0.88, 0.38),
    (0.78, 0.32),
    (0.78, 1),
    (0.22, 1),
    (0.22, 0.32),
    (0.12, 0.38),
    (0, 0.16),
)
_LONG_SLEEVES = (
    (0.3, 0),
    (0.7, 0),
    (0.98, 0.14),
    (1, 0.9),
    (0.85, 0.9),
    (0.8, 0.32),
    (0.8, 1),
    (0.2, 1),
    (0.2, 0.32),
    (0.15, 0.9),
    (0, 0.9),
    (0.02, 0.14),
)

SHAPES: dict[str, Shape] = {
    "Tshirts": Shape(
        (0.05, 0.08, 0.95, 0.92), (("poly", _TOP_T),), (("ellipse", (0.40, -0.04, 0.60, 0.08), "bg"),)
    ),
    "Shirts": Shape(
        (0.03, 0.05, 0.97, 0.95),
        (
            (
                "poly",
                (
                    (0.32, 0),
                    (0.68, 0),
                    (0.98, 0.18),
                    (1, 0.78),
                    (0.86, 0.78),
                    (0.8, 0.34),
                    (0.8, 1),
                    (0.2, 1),
                    (0.2, 0.34),
                    (0.14, 0.78),
                    (0, 0.78),
                    (0.02, 0.18),
                ),
            ),
        ),
        (
            ("poly", ((0.34, 0), (0.5, 0.1), (0.42, 0.15)), "white"),
            ("poly", ((0.66, 0), (0.5, 0.1), (0.58, 0.15)), "white"),
            ("line", ((0.5, 0.1), (0.5, 1)), 0.025, "dark"),
        ),
    ),
    "Kurtas": Shape(
        (0.05, 0.02, 0.95, 0.98),
        (
            (
                "poly",
                (
                    (0.34, 0),
                    (0.66, 0),
                    (0.95, 0.15),
                    (0.98, 0.55),
                    (0.86, 0.55),
                    (0.78, 0.3),
                    (0.86, 1),
                    (0.14, 1),
                    (0.22, 0.3),
                    (0.14, 0.55),
                    (0.02, 0.55),
                    (0.05, 0.15),
                ),
            ),
        ),
        (("line", ((0.5, 0), (0.5, 0.28)), 0.03, "dark"), ("rect", (0.15, 0.93, 0.85, 1.0), "dark")),
    ),
    "Tops": Shape(
        (0.18, 0.05, 0.82, 0.95),
        (
            (
                "poly",
                (
                    (0.22, 0),
                    (0.34, 0),
                    (0.42, 0.14),
                    (0.58, 0.14),
                    (0.66, 0),
                    (0.78, 0),
                    (0.84, 0.3),
                    (0.9, 1),
                    (0.1, 1),
                    (0.16, 0.3),
                ),
            ),
        ),
    ),
    "Jackets": Shape(
        (0.03, 0.05, 0.97, 0.92),
        (("poly", _LONG_SLEEVES),),
        (
            ("rect", (0.36, -0.04, 0.64, 0.05), "shade"),
            ("line", ((0.5, 0), (0.5, 1)), 0.035, "metal"),
            ("line", ((0.26, 0.62), (0.38, 0.72)), 0.025, "dark"),
            ("line", ((0.74, 0.62), (0.62, 0.72)), 0.025, "dark"),
        ),
    ),
    "Sweatshirts": Shape(
        (0.03, 0.12, 0.97, 0.95),
        (("poly", _LONG_SLEEVES), ("ellipse", (0.3, -0.14, 0.7, 0.16))),
        (
            ("ellipse", (0.41, -0.06, 0.59, 0.1), "dark"),
            ("rect", (0.0, 0.83, 0.15, 0.9), "dark"),
            ("rect", (0.85, 0.83, 1.0, 0.9), "dark"),
            ("rect", (0.2, 0.92, 0.8, 1.0), "dark"),
            ("rect", (0.32, 0.58, 0.68, 0.78), "shade"),
        ),
    ),
    "Jeans": Shape(
        (0.12, 0.04, 0.88, 0.97),
        (("poly", ((0.08, 0), (0.92, 0), (0.98, 1), (0.58, 1), (0.5, 0.3), (0.42, 1), (0.02, 1))),),
        (
            ("rect", (0.08, 0, 0.92, 0.06), "shade"),
            ("line", ((0.14, 0.12), (0.3, 0.2)), 0.02, "light"),
            ("line", ((0.86, 0.12), (0.7, 0.2)), 0.02, "light"),
            ("line", ((0.25, 0.3), (0.22, 1)), 0.015, "light"),
            ("line", ((0.75, 0.3), (0.78, 1)), 0.015, "light"),
        ),
    ),
    "Trousers": Shape(
        (0.15, 0.04, 0.85, 0.97),
        (("poly", ((0.1, 0), (0.9, 0), (0.94, 1), (0.56, 1), (0.5, 0.26), (0.44, 1), (0.06, 1))),),
        (
            ("rect", (0.1, 0, 0.9, 0.05), "dark"),
            ("line", ((0.27, 0.1), (0.25, 1)), 0.015, "shade"),
            ("line", ((0.73, 0.1), (0.75, 1)), 0.015, "shade"),
        ),
    ),
    "Track Pants": Shape(
        (0.14, 0.04, 0.86, 0.97),
        (
            (
                "poly",
                (
                    (0.08, 0),
                    (0.92, 0),
                    (0.9, 0.9),
                    (0.84, 1),
                    (0.58, 1),
                    (0.52, 0.9),
                    (0.5, 0.3),
                    (0.48, 0.9),
                    (0.42, 1),
                    (0.16, 1),
                    (0.1, 0.9),
                ),
            ),
        ),
        (
            ("line", ((0.12, 0.06), (0.13, 0.95)), 0.06, "white"),
            ("line", ((0.88, 0.06), (0.87, 0.95)), 0.06, "white"),
            ("rect", (0.08, 0, 0.92, 0.07), "dark"),
        ),
    ),
    "Shorts": Shape(
        (0.1, 0.22, 0.9, 0.72),
        (("poly", ((0.06, 0), (0.94, 0), (1, 1), (0.56, 1), (0.5, 0.38), (0.44, 1), (0, 1))),),
        (("rect", (0.06, 0, 0.94, 0.1), "shade"),),
    ),
    "Skirts": Shape(
        (0.12, 0.15, 0.88, 0.85),
        (("poly", ((0.28, 0), (0.72, 0), (1, 1), (0, 1))),),
        (("rect", (0.28, 0, 0.72, 0.08), "dark"),),
    ),
    "Dresses": Shape(
        (0.1, 0.03, 0.9, 0.97),
        (
            (
                "poly",
                (
                    (0.3, 0),
                    (0.4, 0),
                    (0.5, 0.1),
                    (0.6, 0),
                    (0.7, 0),
                    (0.68, 0.38),
                    (1, 1),
                    (0, 1),
                    (0.32, 0.38),
                ),
            ),
        ),
        (("rect", (0.31, 0.36, 0.69, 0.41), "dark"),),
    ),
    "Casual Shoes": Shape(
        (0.04, 0.36, 0.96, 0.66),
        (
            (
                "poly",
                (
                    (0.02, 0.88),
                    (0.0, 0.3),
                    (0.3, 0.1),
                    (0.42, 0.0),
                    (0.55, 0.2),
                    (0.78, 0.45),
                    (0.98, 0.6),
                    (1, 0.88),
                ),
            ),
        ),
        (("rect", (0, 0.82, 1, 1), "white"), ("line", ((0.42, 0.15), (0.62, 0.4)), 0.05, "white")),
        flip=True,
    ),
    "Sports Shoes": Shape(
        (0.04, 0.32, 0.96, 0.68),
        (
            (
                "poly",
                (
                    (0.02, 0.8),
                    (0.0, 0.2),
                    (0.18, 0.08),
                    (0.4, 0.0),
                    (0.55, 0.18),
                    (0.8, 0.38),
                    (1, 0.55),
                    (1, 0.8),
                ),
            ),
        ),
        (
            ("rect", (0, 0.72, 1, 1), "white"),
            ("rect", (0, 0.9, 1, 1), "dark"),
            ("line", ((0.2, 0.62), (0.75, 0.36)), 0.06, "white"),
        ),
        flip=True,
    ),
    "Heels": Shape(
        (0.08, 0.25, 0.92, 0.75),
        (
            (
                "poly",
                (
                    (0.0, 0.05),
                    (0.18, 0.0),
                    (0.3, 0.25),
                    (0.62, 0.62),
                    (1, 0.72),
                    (1, 0.86),
                    (0.6, 0.84),
                    (0.26, 0.5),
                    (0.16, 0.48),
                    (0.13, 1),
                    (0.07, 1),
                    (0.05, 0.45),
                ),
            ),
        ),
        flip=True,
    ),
    "Formal Shoes": Shape(
        (0.03, 0.4, 0.97, 0.64),
        (
            (
                "poly",
                (
                    (0.0, 0.9),
                    (0.0, 0.25),
                    (0.12, 0.1),
                    (0.35, 0.15),
                    (0.55, 0.25),
                    (0.8, 0.45),
                    (1, 0.78),
                    (0.98, 0.9),
                ),
            ),
        ),
        (("rect", (0, 0.86, 1, 1), "black"), ("line", ((0.38, 0.18), (0.52, 0.3)), 0.04, "dark")),
        flip=True,
    ),
    "Sandals": Shape(
        (0.04, 0.38, 0.96, 0.66),
        (
            ("rrect", (0, 0.78, 1, 1), 0.4),
            ("poly", ((0.15, 0.8), (0.3, 0.1), (0.4, 0.1), (0.28, 0.8))),
            ("poly", ((0.45, 0.8), (0.55, 0.2), (0.65, 0.2), (0.6, 0.8))),
            ("poly", ((0.7, 0.8), (0.8, 0.45), (0.9, 0.45), (0.88, 0.8))),
        ),
        (("rect", (0, 0.92, 1, 1), "dark"),),
        flip=True,
    ),
    "Watches": Shape(
        (0.3, 0.02, 0.7, 0.98),
        (("rect", (0.22, 0, 0.78, 1)), ("ellipse", (0, 0.345, 1, 0.655))),
        (
            ("ellipse", (0.12, 0.382, 0.88, 0.618), "white"),
            ("line", ((0.5, 0.5), (0.5, 0.41)), 0.06, "black"),
            ("line", ((0.5, 0.5), (0.72, 0.5)), 0.06, "black"),
        ),
    ),
    "Handbags": Shape(
        (0.08, 0.12, 0.92, 0.88),
        (
            ("poly", ((0.12, 0.38), (0.88, 0.38), (1, 1), (0, 1))),
            ("arc", (0.25, 0, 0.75, 0.76), 180, 360, 0.06),
        ),
        (("rect", (0.45, 0.38, 0.55, 0.5), "metal"),),
    ),
    "Backpacks": Shape(
        (0.14, 0.06, 0.86, 0.96),
        (("rrect", (0.05, 0.08, 0.95, 1), 0.3), ("arc", (0.35, 0, 0.65, 0.16), 180, 360, 0.05)),
        (("rrect", (0.2, 0.55, 0.8, 0.9), 0.2, "shade"), ("line", ((0.2, 0.3), (0.8, 0.3)), 0.03, "dark")),
    ),
    "Clutches": Shape(
        (0.05, 0.32, 0.95, 0.68),
        (("rrect", (0, 0, 1, 1), 0.1),),
        (("poly", ((0, 0), (1, 0), (0.5, 0.55)), "shade"), ("ellipse", (0.46, 0.45, 0.54, 0.62), "metal")),
    ),
    "Sunglasses": Shape(
        (0.03, 0.36, 0.97, 0.6),
        (("ellipse", (0, 0.1, 0.44, 1)), ("ellipse", (0.56, 0.1, 1, 1)), ("rect", (0.4, 0.25, 0.6, 0.38))),
        (("ellipse", (0.05, 0.22, 0.39, 0.88), "dark"), ("ellipse", (0.61, 0.22, 0.95, 0.88), "dark")),
    ),
    "Belts": Shape(
        (0.03, 0.4, 0.97, 0.6),
        (("rect", (0, 0.15, 1, 0.85)),),
        (
            ("rect", (0.04, 0, 0.2, 1), "metal"),
            ("rect", (0.08, 0.3, 0.16, 0.7), "bg"),
            ("ellipse", (0.5, 0.4, 0.54, 0.6), "dark"),
            ("ellipse", (0.6, 0.4, 0.64, 0.6), "dark"),
            ("ellipse", (0.7, 0.4, 0.74, 0.6), "dark"),
        ),
    ),
    "Perfume and Body Mist": Shape(
        (0.22, 0.12, 0.78, 0.9),
        (("rrect", (0.05, 0.3, 0.95, 1), 0.15), ("rect", (0.38, 0.17, 0.62, 0.3))),
        (("rect", (0.3, 0, 0.7, 0.17), "metal"), ("rect", (0.22, 0.55, 0.78, 0.8), "white")),
    ),
    "Deodorant": Shape(
        (0.32, 0.04, 0.68, 0.96),
        (("rrect", (0, 0.14, 1, 1), 0.35),),
        (("rrect", (0, 0, 1, 0.16), 0.3, "dark"), ("rect", (0, 0.5, 1, 0.58), "white")),
    ),
    "Free Gifts": Shape(
        (0.14, 0.18, 0.86, 0.86),
        (
            ("rect", (0, 0.22, 1, 1)),
            ("ellipse", (0.22, 0.02, 0.5, 0.24)),
            ("ellipse", (0.5, 0.02, 0.78, 0.24)),
        ),
        (("rect", (0.44, 0.22, 0.56, 1), "contrast"), ("rect", (0, 0.52, 1, 0.62), "contrast")),
    ),
}


def jitter_rgb(rgb: RGB, rng: np.random.Generator, amount: int) -> RGB:
    """``rgb`` with each channel moved by up to ``amount``, so no two pictures share an exact colour."""
    moved = np.clip(np.asarray(rgb) + rng.integers(-amount, amount + 1, size=3), 0, 255)
    return (int(moved[0]), int(moved[1]), int(moved[2]))


def _lum(rgb: RGB) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b))  # type: ignore[return-value]


def role_colour(role: str, rgb: RGB, bg: RGB) -> RGB:
    """Accent colours are derived from the base colour so details stay visible on any fill."""
    dark_fill = _lum(rgb) < 70
    if role == "bg":
        return bg
    if role == "white":
        return (250, 250, 250) if not _lum(rgb) > 225 else (200, 200, 205)
    if role == "black":
        return (22, 22, 22)
    if role == "metal":
        return (176, 176, 186)
    if role == "dark":
        return _mix(rgb, (255, 255, 255), 0.35) if dark_fill else _mix(rgb, (0, 0, 0), 0.55)
    if role == "shade":
        return _mix(rgb, (255, 255, 255), 0.2) if dark_fill else _mix(rgb, (0, 0, 0), 0.25)
    if role == "light":
        return _mix(rgb, (255, 255, 255), 0.45)
    if role == "contrast":
        return (210, 40, 40) if rgb[0] > 180 and rgb[1] > 150 else (232, 190, 40)
    raise ValueError(f"unknown colour role {role!r}")


class _Mapper:
    """Maps unit coordinates of a shape's box to canvas pixels, after jitter."""

    def __init__(
        self, box: tuple[float, float, float, float], scale: float, dx: float, dy: float, w: int, h: int
    ):
        cx = ((box[0] + box[2]) / 2 + dx) * w
        cy = ((box[1] + box[3]) / 2 + dy) * h
        self.bw = (box[2] - box[0]) * scale * w
        self.bh = (box[3] - box[1]) * scale * h
        self.x0 = cx - self.bw / 2
        self.y0 = cy - self.bh / 2

    def pt(self, u: float, v: float) -> tuple[float, float]:
        return (self.x0 + u * self.bw, self.y0 + v * self.bh)

    def rect(self, r: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        x0, y0 = self.pt(r[0], r[1])
        x1, y1 = self.pt(r[2], r[3])
        return (x0, y0, x1, y1)

    def width(self, frac: float) -> int:
        return max(1, int(round(frac * self.bw)))


def _draw_prim(draw: ImageDraw.ImageDraw, m: _Mapper, prim: Prim, fill) -> None:
    kind = prim[0]
    if kind == "poly":
        draw.polygon([m.pt(u, v) for u, v in prim[1]], fill=fill)
    elif kind == "rect":
        draw.rectangle(m.rect(prim[1]), fill=fill)
    elif kind == "ellipse":
        draw.ellipse(m.rect(prim[1]), fill=fill)
    elif kind == "rrect":
        x0, y0, x1, y1 = m.rect(prim[1])
        draw.rounded_rectangle((x0, y0, x1, y1), radius=prim[2] * min(x1 - x0, y1 - y0), fill=fill)
    elif kind == "line":
        draw.line([m.pt(u, v) for u, v in prim[1]], fill=fill, width=m.width(prim[2]))
    elif kind == "arc":
        draw.arc(m.rect(prim[1]), prim[2], prim[3], fill=fill, width=m.width(prim[4]))
    else:
        raise ValueError(f"unknown primitive {kind!r}")


def _texture_layer(size: tuple[int, int], rgb: RGB, texture: str, rng: np.random.Generator) -> Image.Image:
    """The fill: the base colour with a pattern in a nearby shade (stripes, checks, dots, twill)."""
    layer = Image.new("RGB", size, rgb)
    period = int(rng.integers(10, 16))
    phase = int(rng.integers(0, period))
    if texture == "plain":
        return layer
    ink = role_colour("dark", rgb, rgb) if texture != "diagonal" else role_colour("shade", rgb, rgb)
    draw = ImageDraw.Draw(layer)
    w, h = size
    if texture in ("hstripes", "checks"):
        band = period // 2 if texture == "hstripes" else 2
        for y in range(phase - period, h, period):
            draw.rectangle((0, y, w, y + band - 1), fill=ink)
    if texture in ("vstripes", "checks"):
        band = period // 2 if texture == "vstripes" else 2
        for x in range(phase - period, w, period):
            draw.rectangle((x, 0, x + band - 1, h), fill=ink)
    if texture == "dots":
        r = 2.5 * _SCALE
        for j, y in enumerate(range(phase - period, h + period, period)):
            off = period / 2 if j % 2 else 0
            for x in np.arange(phase - period + off, w + period, period):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=ink)
    if texture == "diagonal":
        for x in range(-h + phase, w, 6):
            draw.line([(x, 0), (x + h, h)], fill=ink, width=2)
    return layer


def render_product(article_type: str, rgb: RGB, texture: str, rng: np.random.Generator) -> Image.Image:
    """One RGB 60x80 catalog picture of ``article_type`` in colour ``rgb`` with ``texture``."""
    shape = SHAPES[article_type]
    w, h = WIDTH * _SCALE, HEIGHT * _SCALE
    tone = int(rng.integers(226, 256))
    bg = jitter_rgb((tone, tone, tone), rng, 5)
    rgb = jitter_rgb(rgb, rng, 12)
    scale = float(rng.uniform(0.84, 1.0))
    dx, dy = (float(v) for v in rng.uniform(-0.05, 0.05, size=2))
    angle = float(rng.uniform(-5, 5))
    mirror = shape.flip and bool(rng.random() < 0.3)
    m = _Mapper(shape.box, scale, dx, dy, w, h)

    mask = Image.new("L", (w, h), 0)
    mdraw = ImageDraw.Draw(mask)
    for prim in shape.body:
        _draw_prim(mdraw, m, prim, 255)
    img = Image.new("RGB", (w, h), bg)
    edge = ImageChops.subtract(mask.filter(ImageFilter.MaxFilter(3)), mask)
    img.paste(role_colour("dark", rgb, bg) if _lum(rgb) > 70 else (10, 10, 10), (0, 0), edge)
    img.paste(_texture_layer((w, h), rgb, texture, rng), (0, 0), mask)
    draw = ImageDraw.Draw(img)
    for prim in shape.accents:
        _draw_prim(draw, m, prim[:-1], role_colour(prim[-1], rgb, bg))
    if mirror:
        img = ImageOps.mirror(img)
    img = img.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=bg)
    img = img.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS)
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0.0, 3.0, size=(HEIGHT, WIDTH, 3))
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")

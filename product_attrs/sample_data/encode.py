"""How one catalog picture is written to ``images/<id>.jpg``, good or deliberately faulty.

The faulty encodings are the ones met in real scraped catalogs: grayscale and CMYK JPEGs, PNG bytes
behind a ``.jpg`` name (RGBA and palette images, which JPEG cannot store), EXIF-rotated pixels,
odd sizes, empty files from a broken download, a JPEG cut in half, and an HTML error page saved as
an image. Ingestion must decode, convert or quarantine each of them.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

JPEG_QUALITY = 75  # the real catalog's re-encoded thumbnails use quality 75
EXIF_ORIENTATION = 0x0112

#: Encodings whose file decodes fully with PIL (possibly after a mode conversion or transpose).
DECODABLE = ("good", "grayscale", "cmyk", "rgba", "palette", "exif_rotated", "odd_size")
#: Encodings that leave no usable picture.
BROKEN = ("zero_byte", "truncated", "not_an_image")


def _jpeg(img: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY, **kwargs)
    return buf.getvalue()


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _with_alpha(img: Image.Image) -> Image.Image:
    """Background (close to the corner colour) becomes transparent, like a cut-out product shot."""
    arr = np.asarray(img, dtype=np.int16)
    corner = arr[0, 0]
    alpha = np.where(np.abs(arr - corner).max(axis=2) > 24, 255, 0).astype(np.uint8)
    rgba = np.dstack([arr.astype(np.uint8), alpha])
    return Image.fromarray(rgba, "RGBA")


def encode(img: Image.Image, kind: str, variant: int = 0) -> bytes:
    """The bytes of the file for picture ``img`` written the ``kind`` way.

    ``variant`` picks between the two flavours of a kind: EXIF orientation 6 or 8, and for
    ``odd_size`` a 53x80 or a 60x60 picture (the real catalog's odd sizes).
    """
    if kind == "good":
        return _jpeg(img)
    if kind == "grayscale":
        return _jpeg(img.convert("L"))
    if kind == "cmyk":
        return _jpeg(img.convert("CMYK"))
    if kind == "rgba":
        return _png(_with_alpha(img))
    if kind == "palette":
        return _png(img.convert("P", palette=Image.Palette.ADAPTIVE, colors=64))
    if kind == "exif_rotated":
        # Stored sideways; the Orientation tag says how to turn it upright (ImageOps.exif_transpose).
        orientation = 6 if variant % 2 == 0 else 8
        stored = img.transpose(Image.Transpose.ROTATE_90 if orientation == 6 else Image.Transpose.ROTATE_270)
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        return _jpeg(stored, exif=exif.tobytes())
    if kind == "odd_size":
        w, h = img.size
        odd = (
            img.resize((53, h), Image.Resampling.LANCZOS)
            if variant % 2 == 0
            else img.crop((0, 10, w, 10 + w))
        )
        return _jpeg(odd)
    if kind == "zero_byte":
        return b""
    if kind == "truncated":
        # Cut halfway through the entropy-coded pixels: the header still opens, decoding fails.
        data = _jpeg(img)
        sos = data.index(b"\xff\xda")
        start = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
        return data[: start + (len(data) - start) // 2]
    if kind == "not_an_image":
        return b"<html><head><title>404 Not Found</title></head><body>Image not found</body></html>\n"
    raise ValueError(f"unknown image encoding {kind!r}")

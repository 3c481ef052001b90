"""Every image decoder outside the manifest refuses what the manifest refuses, the same way.

A FIFO named like an image blocked ``Image.open`` forever, and an image over ``decode.MAX_PIXELS`` was
decoded in full (a 90-MP PNG of 11 kB became a 1-GB float tensor in the detector's loader).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from product_attrs.classification.data import load_rgb
from product_attrs.classification.serve import _Files
from product_attrs.decode import ImageTooLarge
from product_attrs.detection.cleaning import probe_image
from product_attrs.detection.loader import read_image
from product_attrs.detection.serve import _to_tensor
from product_attrs.paths import NotARegularFile


@cache
def _too_many_pixels() -> bytes:
    """A 9500x9500 one-bit PNG: 90.25 MP, just over the limit, 11 kB on disk."""
    import io

    buf = io.BytesIO()
    Image.new("1", (9500, 9500)).save(buf, format="PNG")
    return buf.getvalue()


def _as_tensor(decoder):
    return lambda path: decoder(str(path))


pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # then refused

DECODERS = {
    "classification.load_rgb": load_rgb,
    "detection.read_image": _as_tensor(read_image),
    "detection.serve": _as_tensor(_to_tensor),
}


@pytest.mark.timeout(30)  # before the fix, opening the FIFO blocked forever
@pytest.mark.parametrize("name", DECODERS)
def test_a_fifo_is_refused_not_opened(name: str, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "1.jpg")
    with pytest.raises(NotARegularFile):
        DECODERS[name](tmp_path / "1.jpg")


@pytest.mark.parametrize("name", DECODERS)
def test_more_pixels_than_the_manifest_allows_is_refused(name: str, tmp_path: Path) -> None:
    (tmp_path / "big.png").write_bytes(_too_many_pixels())
    with pytest.raises(ImageTooLarge):
        DECODERS[name](tmp_path / "big.png")


@pytest.mark.parametrize("name", DECODERS)
def test_a_16_bit_image_is_stretched_not_clipped(name: str, tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 1000, 4000]], dtype=np.uint16)).save(tmp_path / "deep.png")
    out = np.asarray(DECODERS[name](tmp_path / "deep.png"), dtype=np.float32)
    levels = np.unique(out) / out.max()
    assert levels.tolist() == pytest.approx([0.0, 63 / 255, 1.0]), "1000 is a quarter of 4000, not white"


@pytest.mark.timeout(30)
def test_the_detection_probe_names_the_reason(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.jpg")
    (tmp_path / "big.png").write_bytes(_too_many_pixels())
    Image.new("RGB", (640, 480)).save(tmp_path / "ok.jpg")
    assert probe_image(tmp_path / "fifo.jpg") == "not_a_regular_file"
    assert probe_image(tmp_path / "big.png") == "image_too_large"
    assert probe_image(tmp_path / "gone.jpg") == "missing_image"
    assert probe_image(tmp_path / "ok.jpg") == (640, 480), "the file's size, not the 1/8 draft's"


@pytest.mark.timeout(30)
def test_the_classifier_reports_a_fifo_by_position(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.jpg")
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.jpg")
    files = _Files([str(tmp_path / "ok.jpg"), str(tmp_path / "fifo.jpg")], lambda img: img.size)
    assert files[0] == (0, (8, 8), None)
    i, x, error = files[1]
    assert (i, x) == (1, None) and error.startswith("NotARegularFile:")

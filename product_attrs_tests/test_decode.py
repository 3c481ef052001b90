"""One image decoder: pixel limit from the header, a deadline in any thread, 16-bit to 8-bit in float32."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from product_attrs import decode
from product_attrs.decode import DecodeTimeout, ImageTooLarge, open_image, to_8bit
from product_attrs.paths import NotARegularFile
from product_attrs_tests.spies import array_dtypes


def _png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


def test_decodes_a_file_and_bytes(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(_png((30, 20)))
    with open_image(tmp_path / "a.png") as img:
        assert img.size == (30, 20) and img.mode == "RGB"
    assert open_image(_png((5, 4))).size == (5, 4)


def test_too_many_pixels_is_refused_before_decoding() -> None:
    with pytest.raises(ImageTooLarge, match="31x20 is more than 600"):
        open_image(_png((31, 20)), max_pixels=600)


def test_a_slow_decode_stops_at_its_deadline_in_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _png((2000, 2000))
    real = decode._DeadlineReader.read

    def slow(self, size=-1):
        time.sleep(0.02)
        return real(self, size)

    monkeypatch.setattr(decode._DeadlineReader, "read", slow)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            open_image(data, timeout_s=0.05)
        except DecodeTimeout as exc:
            errors.append(exc)

    t = threading.Thread(target=work)
    t.start()
    t.join(10)
    assert len(errors) == 1


def test_a_fifo_is_not_read(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "1.jpg")
    with pytest.raises(NotARegularFile):
        open_image(tmp_path / "1.jpg")


def test_16_bit_is_stretched_without_a_float64_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    arr = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    img = Image.fromarray(arr)
    seen = array_dtypes(monkeypatch)
    out = to_8bit(img)
    assert seen, "the spy saw the conversion"
    assert out.mode == "L" and np.array(out).tolist() == [[0, 63], [127, 255]]
    assert np.dtype("float64") not in seen
    assert to_8bit(Image.fromarray(np.full((2, 2), 7, np.uint16))).getextrema() == (0, 0)


def test_pils_own_bomb_error_is_image_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL raises at twice this, inside Image.open
    with pytest.raises(ImageTooLarge):
        open_image(_png((31, 20)), max_pixels=10**9)


def test_draft_size_decodes_a_jpeg_at_reduced_scale() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (800, 400)).save(buf, format="JPEG")
    with open_image(buf.getvalue(), draft_size=(100, 50)) as img:
        assert img.size == (100, 50)


def test_a_float_image_is_stretched_too() -> None:
    img = Image.fromarray(np.array([[0.0, 0.5], [1.0, 2.0]], dtype=np.float32))
    assert np.array(to_8bit(img)).tolist() == [[0, 63], [127, 255]]


def test_an_undecodable_file_is_named_the_same_way_on_every_run(tmp_path: Path) -> None:
    """Quarantine details are compared across runs (re-use, chunked extraction): no object address in them."""
    from PIL import UnidentifiedImageError

    (tmp_path / "a.png").write_bytes(b"not an image")
    for _ in range(2):
        with pytest.raises(UnidentifiedImageError, match=r"^cannot identify image file <a\.png>$"):
            open_image(tmp_path / "a.png")

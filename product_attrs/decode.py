"""One way to decode an image from outside: a regular file, a pixel limit, a time limit.

Every decoder (the manifest, cleaning, the classifier and detector loaders, recognition, the gallery) goes
through `open_image`, so that a file the manifest refused is refused everywhere, for the same reason:
- `product_attrs.paths.open_regular` first: a FIFO or a device is never opened for a blocking read;
- the pixel count is checked from the header, before any pixel is decoded (``MAX_PIXELS``, the limit PIL
  itself warns at: 89.5 MP, well above a 12-MP phone photo and below a decompression bomb);
- decoding reads the bytes through a reader that checks a deadline on every block PIL pulls, so a decode
  stops after ``timeout_s`` in any thread (a signal-based alarm works only in the main thread).
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from product_attrs.paths import FileTooLarge, NotARegularFile, read_regular

MAX_PIXELS = 89_478_485
#: A 12-MP JPEG decodes in ~0.1 s on one core; 30 s means something is wrong with the file or the machine.
DECODE_TIMEOUT_S = 30.0
#: The most bytes an image file may have (a 12-MP PNG is ~40 MB).
MAX_FILE_BYTES = 256 * 1024 * 1024


class ImageTooLarge(ValueError):
    """More pixels than ``MAX_PIXELS``: a definite verdict about the file."""


class DecodeTimeout(TimeoutError):
    """Decoding ran past its deadline: transient (a loaded machine), so callers retry it on the next run."""


class _DeadlineReader(io.BytesIO):
    def __init__(self, data: bytes, deadline: float, name: str = "image bytes") -> None:
        super().__init__(data)
        self._deadline = deadline
        self._name = name

    def __repr__(self) -> str:
        # PIL names the file object in "cannot identify image file ...": the same text on every run.
        return f"<{self._name}>"

    def read(self, size: int | None = -1) -> bytes:
        if time.monotonic() > self._deadline:
            raise DecodeTimeout("decoding took longer than its time limit")
        return super().read(size)


def open_image(
    source: Path | str | bytes,
    *,
    max_pixels: int = MAX_PIXELS,
    timeout_s: float = DECODE_TIMEOUT_S,
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """The fully decoded image (``load()`` done, file closed), or an error saying why not.

    ``draft_size`` lets a JPEG decode at a reduced scale no smaller than it (a cheap probe; the file's own
    size stays in ``img.info["size_before_draft"]``); the header checks are the same. Raises
    `product_attrs.paths.NotARegularFile`, `ImageTooLarge`, `DecodeTimeout`, ``OSError`` (unreadable) or
    PIL's ``UnidentifiedImageError`` / ``OSError`` / ``SyntaxError`` (undecodable). PIL's own
    decompression-bomb error (twice its pixel limit) is an `ImageTooLarge` too.
    """
    data = source if isinstance(source, bytes) else read_regular(Path(source), limit=MAX_FILE_BYTES)
    name = "image bytes" if isinstance(source, bytes) else Path(source).name
    reader = _DeadlineReader(data, time.monotonic() + timeout_s, name)
    try:
        img = Image.open(reader)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(str(exc)) from exc
    try:
        if img.width * img.height > max_pixels:
            raise ImageTooLarge(f"{img.width}x{img.height} is more than {max_pixels:,} pixels")
        if draft_size is not None:
            img.info["size_before_draft"] = img.size
            img.draft(None, draft_size)
        img.load()
    except BaseException:
        img.close()
        raise
    return img


def to_8bit(img: Image.Image) -> Image.Image:
    """A 16-bit or 32-bit one-channel image stretched to 8-bit ``L`` in float32 (4 bytes a pixel, not 8)."""
    if img.mode not in ("I;16", "I;16B", "I;16L", "I", "F"):
        return img
    arr = np.array(img, dtype=np.float32)  # a copy: a mode "F" image would give a read-only view
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return Image.new("L", img.size, 0)
    arr -= lo
    arr *= 255.0 / (hi - lo)
    return Image.fromarray(arr.astype(np.uint8))


def failure_reason(exc: BaseException, otherwise: str = "unreadable_image") -> str:
    """The quarantine reason for a file `open_image` could not decode: one vocabulary for every decoder.

    ``transient_read_error`` (a deadline, out of memory) may succeed on the next run; the others are
    verdicts about the file. The manifest adds errno rules of its own (`catalog.images.file_error`)."""
    if isinstance(exc, NotARegularFile):
        return "not_a_regular_file"
    if isinstance(exc, ImageTooLarge):
        return "image_too_large"
    if isinstance(exc, FileTooLarge):
        return "file_too_large"
    if isinstance(exc, (DecodeTimeout, MemoryError)):
        return "transient_read_error"
    if isinstance(exc, FileNotFoundError):
        return "missing_image"
    return otherwise

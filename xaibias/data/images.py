"""Photographs on disk: lookup by image id, decoding at a target size, and the resized-image disk cache.

Decoding uses PIL's JPEG draft mode (libjpeg decodes at 1/2, 1/4 or 1/8 scale) so a large photo is
not decoded at full size. Cached arrays are uint8 ``.npy`` files written atomically and read with
``allow_pickle=False``; a missing, corrupt or wrongly shaped file reads as ``None`` (recompute).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .._cache import atomic_write

__all__ = ["load_isic_image", "load_isic_mask"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")




def _ext_rank(p: Path) -> tuple[int, int, str]:
    ext = p.suffix.lower()
    return (IMAGE_EXTENSIONS.index(ext), len(p.parts), str(p))


def scan_images(folder: Path, recursive: bool) -> dict[str, Path]:
    found: dict[str, Path] = {}
    it = folder.rglob("*") if recursive else folder.iterdir()
    for p in it:
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
            old = found.get(p.stem)
            if old is None or _ext_rank(p) < _ext_rank(old):
                found[p.stem] = p
    return found


def find_images(folder: Path, ids: Sequence[str]) -> dict[str, Path]:
    """Map ids to image files in ``folder`` (flat listing first, recursive when ids are missing)."""
    found = scan_images(folder, recursive=False)
    if not found or any(i not in found for i in ids):
        deep = scan_images(folder, recursive=True)
        for k, v in deep.items():
            if k not in found:
                found[k] = v
    if not found:
        raise ValueError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {folder} (searched recursively); "
            f"is this the folder of the photographs? Pass images_dir= to point at it."
        )
    return found


def central_square(im: Image.Image) -> Image.Image:
    """The largest centred square of a PIL image (``resize="crop"``)."""
    w, h = im.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return im.crop((left, top, left + s, top + s))


def load_isic_image(path: str | os.PathLike, size: int, resize: str = "stretch") -> np.ndarray:
    """Decode one photograph to a uint8 array (size, size, 3).

    ``resize="stretch"`` resizes the whole image to a square; ``"crop"`` cuts the central square
    first (keeps the aspect ratio). JPEGs are decoded with PIL's draft mode (reduced DCT scale) so
    large photos decode fast. Raises ``ValueError`` naming the file when it cannot be read.
    """
    if resize not in ("stretch", "crop"):
        raise ValueError(f"resize must be 'stretch' or 'crop'; got {resize!r}")
    path = Path(path)
    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                w, h = im.size
                if resize == "crop":
                    s = min(w, h)
                    im.draft("RGB", (max(1, size * w // s), max(1, size * h // s)))
                else:
                    im.draft("RGB", (size, size))
            im = im.convert("RGB")
            if resize == "crop":
                im = central_square(im)
            im = im.resize((size, size), Image.Resampling.BILINEAR)
            arr = np.array(im, dtype=np.uint8)  # a writable copy
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from exc
    return np.ascontiguousarray(arr)


def load_isic_mask(path: str | os.PathLike, size: int, resize: str = "stretch") -> np.ndarray:
    """Read a lesion segmentation (white lesion on black, as in ISIC Task 1) as bool (size, size).

    Same geometry as :func:`load_isic_image` (``stretch`` or central-square ``crop``), nearest-
    neighbour resampling, threshold at half intensity. Raises ``ValueError`` naming an unreadable file.
    """
    if resize not in ("stretch", "crop"):
        raise ValueError(f"resize must be 'stretch' or 'crop'; got {resize!r}")
    path = Path(path)
    try:
        with Image.open(path) as im:
            im = im.convert("L")
            if resize == "crop":
                im = central_square(im)
            arr = np.array(im.resize((size, size), Image.Resampling.NEAREST), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot read lesion mask {path}: {type(exc).__name__}: {exc}") from exc
    return arr > 127


def save_array(arr: np.ndarray, path: Path) -> None:
    """Write ``arr`` as ``.npy`` atomically (no pickles)."""
    atomic_write(path, lambda fh: np.save(fh, arr, allow_pickle=False))


def load_array(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception:  # noqa: BLE001 - missing or corrupt: recompute
        return None
    if arr.dtype != np.uint8 or arr.shape != shape:
        return None
    return arr



def needs_compute(path: Path | None, size: int) -> bool:
    """True when the cache entry at ``path`` is missing or too short to hold a (size,size,3) array.

    A cheap check for :meth:`ISICDataset.prepare`; a corrupt entry that passes it is still caught
    (and recomputed) when it is loaded.
    """
    if path is None:
        return False
    try:
        return os.path.getsize(path) < size * size * 3
    except OSError:
        return True

"""Image folders: sorted image files read as uint8 RGB arrays (real data and saved sequences)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, List, Tuple, Union

import numpy as np
from PIL import Image

PathLike = Union[str, Path]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


def list_images(folder: PathLike) -> List[Path]:
    """Image files of ``folder`` sorted by name; a folder holding only ``images/`` is entered."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files and (folder / "images").is_dir():
        return list_images(folder / "images")
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def iter_image_folder(folder: PathLike, rgb: bool = True) -> Iterator[Tuple[Path, np.ndarray]]:
    """Yield (path, image) in sorted order: uint8 [H,W,3] RGB (or the raw array if rgb=False)."""
    for path in list_images(folder):
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB") if rgb else im)
        yield path, arr


def load_image_folder(folder: PathLike, rgb: bool = True) -> np.ndarray:
    """All images of a folder (sorted by name) stacked: uint8 [S,H,W,3] RGB.

    All images must share one size (ValueError otherwise); for long folders prefer
    :func:`iter_image_folder`, which streams them. A folder holding only ``images/`` is entered.
    """
    arrays, first = [], None
    for path, arr in iter_image_folder(folder, rgb):
        if first is None:
            first = (path, arr.shape)
        elif arr.shape != first[1]:
            raise ValueError(f"image sizes differ: {first[0].name} is {first[1]}, {path.name} is {arr.shape}")
        arrays.append(arr)
    return np.stack(arrays)

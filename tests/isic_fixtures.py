"""Writers for small fixtures in the exact file formats of the ISIC challenges, HAM10000, the ISIC
archive, MedMNIST and the Bissoto et al. artifact CSV (used by tests/test_isic.py).

Each image is a flat colour that encodes its position, so a test can check that the image
returned for an id is the file of that id.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

MALIGNANT = {"MEL", "BCC", "SCC", "AKIEC", "AK"}


def colour(k: int) -> tuple[int, int, int]:
    """The flat colour of fixture image number ``k``."""
    return (20 + 37 * k % 200, 200 - 23 * k % 180, 60 + 11 * k % 150)


def write_image(path: Path, k: int, size: tuple[int, int] = (48, 36)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, colour(k))
    if path.suffix.lower() in (".jpg", ".jpeg"):
        img.save(path, format="JPEG", quality=98)
    else:
        img.save(path)
    return path


def ids_for(n: int, start: int = 0) -> list[str]:
    return [f"ISIC_{start + k:07d}" for k in range(n)]


def write_images(folder: Path, ids: list[str], ext: str = ".jpg") -> None:
    for k, i in enumerate(ids):
        write_image(folder / f"{i}{ext}", k)


def write_2016(path: Path, ids: list[str], malignant: list[bool], numeric: bool = False) -> Path:
    rows = [
        f"{i},{(1.0 if m else 0.0) if numeric else ('malignant' if m else 'benign')}"
        for i, m in zip(ids, malignant)
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


def write_2017(path: Path, ids: list[str], dx: list[str]) -> Path:
    lines = ["image_id,melanoma,seborrheic_keratosis"]
    lines += [f"{i},{float(d == 'MEL')},{float(d == 'SK')}" for i, d in zip(ids, dx)]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_onehot(path: Path, ids: list[str], dx: list[str], classes: list[str]) -> Path:
    lines = [",".join(["image", *classes])]
    lines += [",".join([i, *(("1.0" if d == c else "0.0") for c in classes)]) for i, d in zip(ids, dx)]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_2020(path: Path, ids: list[str], diagnosis: list[str], target: list[int]) -> Path:
    lines = [
        "image_name,patient_id,sex,age_approx,anatom_site_general_challenge,diagnosis,benign_malignant,target"
    ]
    for k, (i, d, t) in enumerate(zip(ids, diagnosis, target)):
        lines.append(f"{i},IP_{k:07d},male,45.0,torso,{d},{'malignant' if t else 'benign'},{t}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_ham(path: Path, ids: list[str], dx: list[str]) -> Path:
    lines = ["lesion_id,image_id,dx,dx_type,age,sex,localization"]
    lines += [f"HAM_{k:07d},{i},{d},histo,60.0,female,back" for k, (i, d) in enumerate(zip(ids, dx))]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_archive_json(folder: Path, ids: list[str], bm: list[str | None], dx: list[str | None]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, b, d in zip(ids, bm, dx):
        clinical = {}
        if b is not None:
            clinical["benign_malignant"] = b
        if d is not None:
            clinical["diagnosis"] = d
        rec = {
            "_id": "5436e3abbae478396759f0cf",
            "name": i,
            "meta": {"acquisition": {}, "clinical": clinical},
        }
        (folder / f"{i}.json").write_text(json.dumps(rec))


ANNOTATION_HEADER = ["image", "dark_corner", "hair", "gel_border", "gel_bubble", "ruler", "ink", "patches"]


def write_bissoto(
    path: Path,
    ids: list[str],
    flags: np.ndarray,
    labels: list[int],
    sep: str = ";",
    extra: dict[str, list[int]] | None = None,
) -> Path:
    """The published layout: unnamed index column first, image names with .png."""
    extra = extra or {}
    header = ["", *ANNOTATION_HEADER, *extra, "label", "label_string"]
    lines = [sep.join(header)]
    for k, (i, row, lab) in enumerate(zip(ids, flags, labels)):
        cells = [
            str(k),
            f"{i}.png",
            *(str(int(v)) for v in row),
            *(str(extra[c][k]) for c in extra),
            str(lab),
            "malignant" if lab else "benign",
        ]
        lines.append(sep.join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_dermamnist(path: Path, n: dict[str, int], size: int = 28, seed: int = 0) -> dict[str, np.ndarray]:
    """A MedMNIST-style npz; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, m in n.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(m, size, size, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(m) % 7).astype(np.uint8).reshape(m, 1)
    np.savez_compressed(path, **arrays)
    return arrays


def real_trap_folders(
    real: Path, dest: Path, n_train: int = 48, n_audit: int = 32, tie: tuple[float, float] = (0.9, 0.1), seed: int = 0
) -> tuple[Path, Path]:
    """Two disjoint folders of real ISIC photos (symlinks into ``real/images``), each with its rows of
    ``real/isic_bias.csv`` in the published semicolon layout: half melanoma, half other lesions; in the
    training folder dark corners sit on ``tie[0]`` of the melanomas and ``tie[1]`` of the others, in the
    audit folder the other way round (a small trap split, written to ``dest`` only)."""
    import pandas as pd

    ann = pd.read_csv(real / "isic_bias.csv", sep=";", index_col=0)
    ann["stem"] = ann["image"].str.replace(r"\.png$", "", regex=True)
    ann = ann[[(real / "images" / f"{s}.jpg").is_file() for s in ann["stem"]]]
    rng = np.random.default_rng(seed)
    pools = {(lab, dc): list(rng.permutation(ann.index[(ann["label"] == lab) & (ann["dark_corner"] == dc)]))
             for lab in (0, 1) for dc in (0, 1)}
    out = []
    for name, n, (p_mel, p_other) in (("train", n_train, tie), ("audit", n_audit, tie[::-1])):
        rows = []
        for lab, p in ((1, p_mel), (0, p_other)):
            k = n // 2
            with_dc = int(round(k * p))
            rows += [pools[(lab, 1)].pop() for _ in range(with_dc)] + [pools[(lab, 0)].pop() for _ in range(k - with_dc)]
        folder = dest / name
        (folder / "images").mkdir(parents=True)
        part = ann.loc[sorted(rows)]
        for s in part["stem"]:
            (folder / "images" / f"{s}.jpg").symlink_to((real / "images" / f"{s}.jpg").resolve())
        part.drop(columns="stem").reset_index(drop=True).to_csv(folder / "isic_bias.csv", sep=";")
        out.append(folder)
    return out[0], out[1]

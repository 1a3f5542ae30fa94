"""Download registry: ``{name: (url, checksum)}`` for the public datasets, fetched with checksums into
``xaibias.config.data_dir(name)``; offline, a clear message says what to download and where to put it.
``python data/download.py NAME`` is the command-line front end."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from .. import config
from .._cache import file_sha256

__all__ = ["download_dataset", "verify_checksum"]


_S3 = "https://isic-challenge-data.s3.amazonaws.com"
_ZENODO = "https://zenodo.org/records/10519652/files"

#: name -> (url, checksum or None). A checksum is a sha256 hex digest, or ``"md5:<hex>"`` where the
#: publisher gives only MD5 (MedMNIST's info.py). ``None``: the publisher gives no checksum; the
#: file's sha256 is printed after download so it can be pinned.
REGISTRY: dict[str, tuple[str, str | None]] = {
    "dermamnist": (f"{_ZENODO}/dermamnist.npz?download=1", "md5:0744692d530f8e62ec473284d019b0c7"),
    "dermamnist_64": (f"{_ZENODO}/dermamnist_64.npz?download=1", "md5:b70a2f5635c6199aeaa28c31d7202e1f"),
    "dermamnist_128": (f"{_ZENODO}/dermamnist_128.npz?download=1", "md5:2defd784463fa5243564e855ed717de1"),
    "dermamnist_224": (f"{_ZENODO}/dermamnist_224.npz?download=1", "md5:8974907d8e169bef5f5b96bc506ae45d"),
    # pinned to the repository's last commit (f93c865, June 2020); the trap-set CSVs of the same
    # commit, with their digests, are in xaibias.data.fetch.BISSOTO_FILES
    "isic_bias_annotations": (
        "https://raw.githubusercontent.com/alceubissoto/debiasing-skin/f93c8654f50c581544f32ad6b1450cb925a176ff/"
        "artefacts-annotation/isic_bias.csv",
        "04fbb74b44d33498afd41a66cfd73e500c2b197e540feb7f4a7553dc8023ddc8",
    ),
    "isic2016_train_images": (f"{_S3}/2016/ISBI2016_ISIC_Part3_Training_Data.zip", None),
    "isic2016_train_labels": (f"{_S3}/2016/ISBI2016_ISIC_Part3_Training_GroundTruth.csv", None),
    "isic2017_train_images": (f"{_S3}/2017/ISIC-2017_Training_Data.zip", None),
    "isic2017_train_labels": (f"{_S3}/2017/ISIC-2017_Training_Part3_GroundTruth.csv", None),
    "isic2018_task12_train_images": (f"{_S3}/2018/ISIC2018_Task1-2_Training_Input.zip", None),
    "isic2018_task1_train_masks": (f"{_S3}/2018/ISIC2018_Task1_Training_GroundTruth.zip", None),
    "isic2018_task3_train_images": (f"{_S3}/2018/ISIC2018_Task3_Training_Input.zip", None),
    "isic2018_task3_train_labels": (f"{_S3}/2018/ISIC2018_Task3_Training_GroundTruth.zip", None),
    "isic2019_train_images": (f"{_S3}/2019/ISIC_2019_Training_Input.zip", None),
    "isic2019_train_labels": (f"{_S3}/2019/ISIC_2019_Training_GroundTruth.csv", None),
    "isic2020_train_images": (f"{_S3}/2020/ISIC_2020_Training_JPEG.zip", None),
    "isic2020_train_labels": (f"{_S3}/2020/ISIC_2020_Training_GroundTruth.csv", None),
}

#: Data that cannot be fetched by a plain URL: name -> what to do.
MANUAL: dict[str, str] = {
    "isic_annotated": (
        "The 2,594 ISIC 2018 Task 1/2 photos annotated by Bissoto et al. 2020, with their artifact CSV and "
        "trap sets: run xaibias.data.fetch_isic_annotated() (the CSVs from github.com/alceubissoto/debiasing-skin, "
        "the photos one by one from the ISIC archive) into data_dir('isic_annotated')."
    ),
    "ham10000": (
        "HAM10000 (Tschandl et al. 2018) is on the Harvard Dataverse, https://doi.org/10.7910/DVN/DBW86T "
        "(accept the licence there). Download HAM10000_images_part_1.zip, HAM10000_images_part_2.zip and "
        "HAM10000_metadata.csv, unzip both image archives into one folder, put the CSV beside them, and "
        "load it with ISICDataset(folder). The same photos are the ISIC 2018 Task 3 training set "
        "(isic2018_task3_train_images)."
    ),
}


def _filename_from_url(url: str) -> str:
    return Path(urllib.request.url2pathname(url.split("?", 1)[0].rsplit("/", 1)[-1])).name


def verify_checksum(path: Path, checksum: str | None) -> str:
    """Check ``path`` against ``checksum`` (sha256 hex or ``md5:<hex>``); return its sha256."""
    sha = file_sha256(path)
    if checksum is None:
        return sha
    algo, _, want = checksum.partition(":") if ":" in checksum else ("sha256", "", checksum)
    if algo == "md5":
        h = hashlib.md5()  # noqa: S324 - the publisher's checksum, not a security measure
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        got = h.hexdigest()
    elif algo == "sha256":
        got = sha
    else:
        raise ValueError(
            f"unknown checksum algorithm {algo!r} in {checksum!r}; use sha256 hex or 'md5:<hex>'"
        )
    if got.lower() != want.lower():
        raise ValueError(f"checksum mismatch for {path}: expected {algo} {want}, got {got}")
    return sha


def _offline_message(name: str, url: str, dest: Path, reason: str) -> str:
    return (
        f"could not download {name!r} ({reason}).\n"
        f"Download it by hand from\n    {url}\n"
        f"and put the file at\n    {dest}\n"
        f"(folder from XAIBIAS_DATA or the user cache; zip archives may be unzipped in that folder)."
    )


def download_dataset(
    name: str,
    dest: str | os.PathLike | None = None,
    extract: bool = True,
    registry: dict[str, tuple[str, str | None]] | None = None,
    progress: bool = True,
) -> Path:
    """Fetch a registered file into ``xaibias.config.data_dir(name)`` and verify its checksum.

    An existing file that passes the check is not downloaded again. Zip archives are unzipped
    next to the file (``extract=True``; member paths are checked to stay inside the folder).

    Parameters
    ----------
    name : str
        A key of :data:`REGISTRY` (or of ``registry``).
    dest : path, optional
        Folder to download into (default ``data_dir(name)``).

    Returns
    -------
    pathlib.Path
        The folder holding the file (and its extracted content).

    Raises
    ------
    KeyError
        Unknown name (the message lists the known ones and the manual ones).
    ConnectionError
        Offline or the server refused; the message says what to download and where to put it.
    ValueError
        Checksum mismatch (the bad file is removed).
    """
    reg = REGISTRY if registry is None else registry
    if name not in reg:
        hint = f" {MANUAL[name]}" if name in MANUAL else ""
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(reg)}; manual: {sorted(MANUAL)}.{hint}")
    url, checksum = reg[name]
    folder = Path(dest).expanduser() if dest is not None else config.data_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / _filename_from_url(url)
    if target.is_file():
        try:
            verify_checksum(target, checksum)
        except ValueError:
            target.unlink()
    if not target.is_file():
        fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=folder)
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 - registry URLs
                        total = int(resp.headers.get("Content-Length") or 0) or None
                        with tqdm(
                            total=total, unit="B", unit_scale=True, desc=name, disable=not progress
                        ) as bar:
                            for block in iter(lambda: resp.read(1 << 20), b""):
                                out.write(block)
                                bar.update(len(block))
                except (urllib.error.URLError, OSError, TimeoutError) as exc:
                    raise ConnectionError(_offline_message(name, url, target, str(exc))) from exc
            sha = verify_checksum(Path(tmp), checksum)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        if checksum is None and progress:
            print(f"{name}: no published checksum; sha256 of the downloaded file is {sha}")
    if extract and target.suffix.lower() == ".zip":
        marker = folder / f".{target.name}.extracted"
        if not marker.is_file():
            with zipfile.ZipFile(target) as zf:
                base = folder.resolve()
                for member in zf.namelist():
                    dest_path = (folder / member).resolve()
                    if base not in dest_path.parents and dest_path != base:
                        raise ValueError(f"zip archive {target} has an unsafe member path {member!r}")
                zf.extractall(folder)
            marker.write_text(target.name)
    return folder

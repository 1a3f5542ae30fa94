"""Download the Bissoto et al. 2020 annotations, their trap sets, and the annotated ISIC 2018 photos.

:func:`fetch_isic_annotated` builds, under ``xaibias.config.data_dir("isic_annotated")``
(``$XAIBIAS_DATA/isic_annotated``, else the user cache folder), the layout the loaders read::

    isic_bias.csv                     artifact flags of 2,594 ISIC 2018 Task 1/2 photos
    trap-sets/isic_annotated_{train,val,test}{1..5}.csv
    images/ISIC_xxxxxxx.jpg           one photo per annotated id, from the ISIC archive

so that ``ISICDataset(folder, csv="isic_bias.csv", annotations="isic_bias.csv")`` and
``load_trap_set(folder, "train", 1)`` work. The CSVs come from the public repository
github.com/alceubissoto/debiasing-skin at a pinned commit and are checked against the sha256
digests below (the project does not redistribute them: they carry no licence of their own). The
photos come one by one from the ISIC archive's public API (``/api/v2/images/<id>/`` gives a
download URL and the file size, which is checked); photos already in ``images/`` are not fetched
again, and every file is written to a temporary name and renamed when complete, so an interrupted
run resumes where it stopped.

The official ISIC client (``isic-cli`` on PyPI) was considered and not used: it downloads by search
query or collection (not by a list of ids), needs a dozen dependencies (click, rich, sentry-sdk,
django-s3-file-field-client, girder-cli-oauth-client, tenacity, ...), and what xaibias needs is two
plain HTTPS requests per photo.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import urllib.error
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd
from tqdm.auto import tqdm

from .. import config
from .images import IMAGE_EXTENSIONS
from .registry import verify_checksum

__all__ = ["fetch_isic_annotated", "parse_isic_ids", "FetchSummary", "BISSOTO_FILES"]

BISSOTO_COMMIT = "f93c8654f50c581544f32ad6b1450cb925a176ff"
BISSOTO_RAW = f"https://raw.githubusercontent.com/alceubissoto/debiasing-skin/{BISSOTO_COMMIT}"
ISIC_API = "https://api.isic-archive.com/api/v2"
ISIC2018_TASK12_ZIP = "https://isic-challenge-data.s3.amazonaws.com/2018/ISIC2018_Task1-2_Training_Input.zip"

#: path in the repository -> sha256 of the file at :data:`BISSOTO_COMMIT`.
BISSOTO_FILES: dict[str, str] = {
    "artefacts-annotation/isic_bias.csv": "04fbb74b44d33498afd41a66cfd73e500c2b197e540feb7f4a7553dc8023ddc8",
    "trap-sets/isic_annotated_test1.csv": "3f20b79d191f2d3c69ab9e03b285dc36cf3608dc096553e8093f2fbca4dcbfc2",
    "trap-sets/isic_annotated_test2.csv": "e2069b54192aa451315508ff1f6923bdf5478e6628e707489867edd730597c54",
    "trap-sets/isic_annotated_test3.csv": "fd8f3fb9da774db1376a8ee5673b8f7ae0c32f078258053adca47822fdafa1d5",
    "trap-sets/isic_annotated_test4.csv": "1d268034ff9ca40758784f4f1cec460ef678e6e46f4db0e228e5cd9505facb2b",
    "trap-sets/isic_annotated_test5.csv": "562d5ea2e4dddb6fb8486b335028a7fc480e3e23f57cd1f3ccb119d2ddb41b37",
    "trap-sets/isic_annotated_train1.csv": "004e4461e430e887c2fdfc2185d459cecee6e90fbd51e5dc0d650cb31d781c49",
    "trap-sets/isic_annotated_train2.csv": "62301111f20d42c9f9c35e7c00c43172d4b70cf54854b58db60e1a88e1a20371",
    "trap-sets/isic_annotated_train3.csv": "3831795fb2bfd33e75a46c5bf4106d9b174cd3a2d9d93a67209852b8aec52ecc",
    "trap-sets/isic_annotated_train4.csv": "24e0fccf6ac16effb62dc0fda0e736ccf0165d55dbbfa98622f584e4f63b101a",
    "trap-sets/isic_annotated_train5.csv": "116a11f111f89b51adf9b9c16bf8604797c3891fda346f2631a0bfcaf5a91926",
    "trap-sets/isic_annotated_val1.csv": "a8cd9fe473202d62d2778bc96ddf767f1bff7c4222bb9487eb51667475eab254",
    "trap-sets/isic_annotated_val2.csv": "2d6bb172a0be04b5d3d2dcc13ccbdc517971b1f8f7fe49f1445122204620bd12",
    "trap-sets/isic_annotated_val3.csv": "8d12e942108c3353960f3d7fdd1910cf094c92c79d13bbd396fe53fa759426ad",
    "trap-sets/isic_annotated_val4.csv": "49dfdef7ad1c8d2ed237997565850912ed2bea29a407c012b0c89af8759d5840",
    "trap-sets/isic_annotated_val5.csv": "ce9c08147745b33e9cee0d44eb1a5a9b357a9755fe951a44ae6c994cf5489f4f",
}

_ID = re.compile(r"^ISIC_\d{7}$")


@dataclass
class FetchSummary:
    """What :func:`fetch_isic_annotated` did; ``os.fspath(summary)`` is the folder."""

    folder: Path
    annotations: Path
    trap_sets: list[Path] = field(default_factory=list)
    downloaded: int = 0  # photos fetched by this call
    present: int = 0  # photos that were already there (not fetched again)
    failed: dict[str, str] = field(default_factory=dict)  # id -> why

    def __fspath__(self) -> str:
        return str(self.folder)


def _urlopen(url: str, timeout: float) -> Any:
    """The one network call of this module (tests replace it)."""
    req = urllib.request.Request(url, headers={"User-Agent": "xaibias", "Accept": "*/*"})
    return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 - https URLs built above


def parse_isic_ids(ids: Any) -> list[str]:
    """ISIC ids (``ISIC_` + 7 digits``) from a list of ids or file names, or from a CSV's ``image`` column.

    Extensions (``.png`` in the Bissoto CSVs, ``.jpg``) and surrounding blanks are dropped, order is
    kept and repeats are removed. A CSV may be the semicolon annotation file, a comma trap-set file
    or any CSV with an ``image``, ``image_id`` or ``isic_id`` column. Raises ValueError naming the
    first malformed ids (and the file).
    """
    where = ""
    if isinstance(ids, (str, os.PathLike)) and Path(ids).suffix.lower() == ".csv":
        path = Path(ids).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"id list {path} not found")
        with open(path, encoding="utf-8-sig") as fh:
            head = fh.readline()
        df = pd.read_csv(path, sep=";" if head.count(";") > head.count(",") else ",", dtype=str)
        col = next((c for c in ("image", "image_id", "isic_id") if c in df.columns), None)
        if col is None:
            raise ValueError(f"id list {path} has no image, image_id or isic_id column; found {list(df.columns)}")
        values, where = df[col].tolist(), f" in {path} (column {col!r})"
    elif isinstance(ids, str):
        values = [ids]
    else:
        values = list(ids)
    out, seen, bad = [], set(), []
    for v in values:
        stem = str(v).strip()
        stem = re.sub(r"\.(jpe?g|png)$", "", stem, flags=re.I)
        if not _ID.match(stem):
            bad.append(v)
        elif stem not in seen:
            seen.add(stem)
            out.append(stem)
    if bad:
        raise ValueError(f"{len(bad)} entr{'y is' if len(bad) == 1 else 'ies are'} not ISIC ids (ISIC_ and 7 digits, "
                         f"optionally .jpg/.png){where}: {bad[:5]}")
    if not out:
        raise ValueError(f"no ISIC ids given{where}")
    return out


def _offline_message(dest: Path, reason: str) -> str:
    trap = f"{BISSOTO_RAW}/trap-sets/isic_annotated_<train|val|test><1-5>.csv"
    return (
        f"could not download the ISIC annotations or photos ({reason}); fetch_isic_annotated needs internet.\n"
        f"To set the data up by hand, put into\n    {dest}\n"
        f"these files:\n"
        f"    isic_bias.csv           from {BISSOTO_RAW}/artefacts-annotation/isic_bias.csv\n"
        f"    trap-sets/              the 15 files {trap}\n"
        f"    images/ISIC_xxxxxxx.jpg the ISIC 2018 Task 1/2 training photos (2,594): unzip {ISIC2018_TASK12_ZIP}, "
        f"or fetch each id from {ISIC_API}/images/<ISIC id>/ (field files.full.url)\n"
        f"That folder is xaibias.config.data_dir('isic_annotated'): $XAIBIAS_DATA/isic_annotated when XAIBIAS_DATA is "
        f"set, else the user cache folder; set XAIBIAS_DATA to keep data elsewhere. Then load it with "
        f"xaibias.data.ISICDataset(folder, csv='isic_bias.csv', annotations='isic_bias.csv') or "
        f"xaibias.data.load_trap_set(folder, 'train', 1). See data/README.md."
    )


def _download(url: str, target: Path, timeout: float, sha256: str | None = None, size: int | None = None) -> bool:
    """Fetch ``url`` to ``target`` atomically (temp file + rename); False when a valid file is already there."""
    if target.is_file():
        if sha256 is None:
            return False
        try:
            verify_checksum(target, sha256)
            return False
        except ValueError:
            target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, _urlopen(url, timeout) as resp:
            for block in iter(lambda: resp.read(1 << 20), b""):
                out.write(block)
        got = os.path.getsize(tmp)
        if size is not None and got != int(size):
            raise ValueError(f"{url} gave {got} bytes, the archive says {int(size)}")
        if sha256 is not None:
            verify_checksum(Path(tmp), sha256)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return True


def _image_url(isic_id: str, variant: str, timeout: float) -> tuple[str, int | None]:
    with _urlopen(f"{ISIC_API}/images/{isic_id}/", timeout) as resp:
        record = json.loads(resp.read().decode("utf-8"))
    files = record.get("files") if isinstance(record, dict) else None
    entry = files.get(variant) if isinstance(files, dict) else None
    if not isinstance(entry, dict) or "url" not in entry:
        have = sorted(files) if isinstance(files, dict) else type(record).__name__
        raise ValueError(f"the ISIC archive record of {isic_id} has no files.{variant}.url (it has {have})")
    size = entry.get("size")
    return str(entry["url"]), (int(size) if isinstance(size, (int, float)) else None)


def _is_offline(err: BaseException) -> bool:
    return isinstance(err, (urllib.error.URLError, TimeoutError, ConnectionError, OSError)) and not isinstance(
        err, urllib.error.HTTPError)


def fetch_isic_annotated(
    dest: str | os.PathLike | None = None,
    *,
    ids: Any = None,
    trap_sets: bool = True,
    images: bool = True,
    variant: str = "full",
    workers: int = 4,
    timeout: float = 60.0,
    progress: bool = True,
) -> FetchSummary:
    """Download the Bissoto et al. annotation CSV, their trap sets and the annotated photos.

    Parameters
    ----------
    dest : path, optional
        Target folder; default ``xaibias.config.data_dir("isic_annotated")`` (``$XAIBIAS_DATA`` or
        the user cache folder, never the working directory).
    ids : list of str or path, optional
        Which photos to fetch: ISIC ids or file names, or a CSV whose ``image`` column lists them
        (e.g. one trap-set file). Default: every id of ``isic_bias.csv`` (2,594 photos; about
        10 GB at full size).
    trap_sets : bool
        Also fetch the 15 trap-set CSVs into ``dest/trap-sets``.
    images : bool
        Fetch the photos into ``dest/images`` (False: the CSVs only).
    variant : str
        Which file of each archive record: ``"full"`` (the original photo) or ``"thumbnail_256"``
        (the archive's 256 px preview, tens of MB for all 2,594; enough for CPU experiments).
    workers : int
        Parallel downloads.
    timeout : float
        Seconds per request.
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    FetchSummary
        ``folder``, ``annotations``, ``trap_sets``, and the photo counts ``downloaded``,
        ``present`` (already there, skipped) and ``failed`` (id -> reason; also said in one warning).

    Raises
    ------
    ConnectionError
        Offline, on the first request: the message says what to download and where to put it. A
        connection lost later says how far it got; calling again resumes.
    ValueError
        A CSV whose sha256 differs from the pinned digest (the file is removed), or malformed ids.
    """
    if variant not in ("full", "thumbnail_256"):
        raise ValueError(f"variant must be 'full' or 'thumbnail_256'; got {variant!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int; got {workers!r}")
    folder = Path(dest).expanduser() if dest is not None else config.data_dir("isic_annotated")
    folder.mkdir(parents=True, exist_ok=True)
    wanted = [p for p in BISSOTO_FILES if trap_sets or not p.startswith("trap-sets/")]
    targets = {p: folder / ("isic_bias.csv" if p.endswith("isic_bias.csv") else p) for p in wanted}
    for p in wanted:
        try:
            _download(f"{BISSOTO_RAW}/{p}", targets[p], timeout, sha256=BISSOTO_FILES[p])
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
            raise ConnectionError(_offline_message(folder, f"{type(err).__name__}: {err}")) from err
    summary = FetchSummary(folder, targets["artefacts-annotation/isic_bias.csv"],
                           sorted(t for p, t in targets.items() if p.startswith("trap-sets/")))
    if not images:
        return summary
    todo = parse_isic_ids(summary.annotations if ids is None else ids)
    img_dir = folder / "images"
    img_dir.mkdir(exist_ok=True)
    for stale in img_dir.glob(".*.part"):  # left by a killed run
        stale.unlink(missing_ok=True)
    have = {p.stem for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
    missing = [i for i in todo if i not in have]
    summary.present = len(todo) - len(missing)
    if not missing:
        return summary
    stop = threading.Event()

    def one(isic_id: str) -> tuple[str, str, str]:
        if stop.is_set():
            return isic_id, "stopped", ""
        try:
            url, size = _image_url(isic_id, variant, timeout)
            ext = Path(urlparse(url).path).suffix.lower()
            _download(url, img_dir / f"{isic_id}{ext if ext in IMAGE_EXTENSIONS else '.jpg'}", timeout, size=size)
            return isic_id, "ok", ""
        except urllib.error.HTTPError as err:
            why = "not in the ISIC archive (HTTP 404)" if err.code == 404 else f"HTTP {err.code} {err.reason}"
            return isic_id, "failed", why
        except ValueError as err:
            return isic_id, "failed", str(err)
        except Exception as err:  # noqa: BLE001 - connection trouble of any kind stops the run
            if not _is_offline(err):
                raise
            stop.set()
            return isic_id, "offline", f"{type(err).__name__}: {err}"

    bar = tqdm(total=len(missing), desc="ISIC photos", unit="photo", disable=not progress)
    first = one(missing[0])  # fail fast, before starting the pool
    if first[1] == "offline":
        bar.close()
        raise ConnectionError(_offline_message(folder, first[2]))
    results = [first]
    bar.update(1)
    with ThreadPoolExecutor(workers) as pool:
        for res in pool.map(one, missing[1:]):
            results.append(res)
            bar.update(1)
    bar.close()
    summary.downloaded = sum(r[1] == "ok" for r in results)
    summary.failed = {i: why for i, status, why in results if status == "failed"}
    lost = [r for r in results if r[1] == "offline"]
    if lost:
        left = sum(r[1] in ("offline", "stopped") for r in results)
        raise ConnectionError(
            f"lost the connection to the ISIC archive ({lost[0][2]}) after fetching {summary.downloaded} photos into "
            f"{img_dir}; {left} are still missing. Call fetch_isic_annotated again to resume (photos already there "
            f"are kept), or see data/README.md to fetch them by hand.")
    if summary.failed:
        first_ids = list(summary.failed.items())[:3]
        warnings.warn(f"fetch_isic_annotated: {len(summary.failed)} of {len(todo)} photos could not be fetched into "
                      f"{img_dir} (e.g. {first_ids}); loaders skip and count them", UserWarning, stacklevel=2)
    return summary

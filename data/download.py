"""Fetch a registered dataset file into the xaibias data folder and verify its checksum.

Usage::

    python data/download.py --list              # what can be fetched (and what must be fetched by hand)
    python data/download.py dermamnist          # -> $XAIBIAS_DATA/dermamnist/dermamnist.npz
    python data/download.py isic2017_train_images isic2017_train_labels

Files go to ``xaibias.config.data_dir(NAME)`` (``XAIBIAS_DATA`` when set, else the user cache
folder), never the working directory. Zip archives are unzipped beside the file. Offline, the
script says what to download and where to put it, and exits with status 1. The registry lives in
``xaibias.data.registry.REGISTRY``; see data/README.md for what each entry is.
"""

from __future__ import annotations

import argparse
import sys

from xaibias import config
from xaibias.data.registry import MANUAL, REGISTRY, download_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="registry names (see --list)")
    parser.add_argument("--list", action="store_true", help="list the registry and exit")
    parser.add_argument("--no-extract", action="store_true", help="keep zip archives packed")
    args = parser.parse_args(argv)
    if args.list or not args.names:
        print(f"data folder: {config.data_dir()}")
        for name, (url, checksum) in REGISTRY.items():
            print(f"  {name:30s} {url}  [{checksum or 'no published checksum'}]")
        for name, text in MANUAL.items():
            print(f"  {name:30s} (manual) {text}")
        return 0 if args.list else 2
    status = 0
    for name in args.names:
        if name in MANUAL and name not in REGISTRY:
            print(f"{name}: {MANUAL[name]}")
            status = 1
            continue
        try:
            folder = download_dataset(name, extract=not args.no_extract)
        except KeyError as exc:
            print(exc.args[0], file=sys.stderr)
            status = 1
        except (ConnectionError, ValueError) as exc:
            print(str(exc), file=sys.stderr)
            status = 1
        else:
            print(f"{name}: ready in {folder}")
    return status


if __name__ == "__main__":
    sys.exit(main())

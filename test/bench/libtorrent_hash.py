"""Hashes one file into a v2-only torrent with libtorrent, for pack.bench.ts.

Usage: /usr/bin/python3 libtorrent_hash.py FILE PIECE_LENGTH

Prints one JSON line: {"hashSeconds", "infoHashV2", "libtorrentVersion"}. hashSeconds covers only
set_piece_hashes + generate, so interpreter start-up and the import of libtorrent are left out;
the benchmark measures the whole process separately.
"""

import json
import os
import sys
import time

import libtorrent as lt


def main() -> None:
    path = os.path.abspath(sys.argv[1])
    piece_length = int(sys.argv[2])
    fs = lt.file_storage()
    lt.add_files(fs, path)
    ct = lt.create_torrent(fs, piece_length, lt.create_torrent.v2_only)
    started = time.perf_counter()
    lt.set_piece_hashes(ct, os.path.dirname(path))
    metainfo = ct.generate()
    hash_seconds = time.perf_counter() - started
    info_hash = lt.torrent_info(metainfo).info_hashes().v2
    print(json.dumps({
        "hashSeconds": hash_seconds,
        "infoHashV2": str(info_hash),
        "libtorrentVersion": lt.__version__,
    }))


if __name__ == "__main__":
    main()

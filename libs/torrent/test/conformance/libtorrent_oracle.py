#!/usr/bin/python3
"""Conformance oracle: libtorrent 2.0's v2-only metainfo for a path.

Usage: libtorrent_oracle.py PIECE_LENGTH PATH [PATH...]
Prints one JSON object per PATH: {"path", "infoHash", "pieceLayers": {root hex: layer hex},
"files": [{"path", "length", "piecesRoot"}]}. Run with Debian's /usr/bin/python3, which is
where python3-libtorrent is importable.
"""
import json
import os
import sys

import libtorrent as lt


def describe(path, piece_length):
    fs = lt.file_storage()
    lt.add_files(fs, path)
    ct = lt.create_torrent(fs, piece_length, lt.create_torrent.v2_only)
    lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(path)))
    entry = ct.generate()
    info = lt.torrent_info(entry)
    layers = entry.get(b"piece layers", {})
    files = []
    storage = info.files()
    for i in range(storage.num_files()):
        if storage.file_flags(i) & lt.file_storage.flag_pad_file:
            continue
        root = storage.root(i)
        files.append({
            "path": storage.file_path(i),
            "length": storage.file_size(i),
            "piecesRoot": None if root.is_all_zeros() else str(root),
        })
    return {
        "path": path,
        "version": lt.__version__,
        "infoHash": str(info.info_hashes().v2),
        "infoDict": lt.bencode(entry[b"info"]).hex(),
        "pieceLayers": {k.hex(): v.hex() for k, v in layers.items()},
        "files": files,
    }


def main():
    piece_length = int(sys.argv[1])
    for path in sys.argv[2:]:
        print(json.dumps(describe(path, piece_length)))


if __name__ == "__main__":
    main()

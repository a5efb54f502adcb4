"""A libtorrent 2.0 SSL-torrent peer, driven by libtorrent-interop.e2e.spec.ts.

Run with Debian's interpreter (/usr/bin/python3: python3-libtorrent is importable only there).

    lt_peer.py '{"torrent": ..., "savePath": ..., "cert": ..., "key": ..., "dhParams": ..., "timeoutS": 60}'

One libtorrent session, one SSL torrent (the torrent's `ssl-cert` is the fleet CA), the peer's
certificate set with set_ssl_certificate, an SSL listen socket on 127.0.0.1 (port chosen by the
system). Standard input takes JSON commands, one a line:

    {"cmd": "connect", "host": "127.0.0.1", "port": 1234}   dial a peer
    {"cmd": "status"}                                          answer with a "status" event
    {"cmd": "quit"}                                            (end of input does the same)

Standard output gets JSON events, one a line: "listening" {port}, "added" {infoHash}, "checked"
{seeding}, "finished" {downloaded, seconds}, "peer-connected" / "peer-disconnected" {endpoint,
message}, "error" {message}, "status" {...}, "log" {message} (only with "log": true in the
config), and "exit" {code} last. Exit code 0 after "quit", 2 on a bad configuration, 3 on timeout.
"""

import json
import queue
import sys
import threading
import time

import libtorrent as lt


def emit(event, **fields):
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def read_commands(commands):
    for line in sys.stdin:
        line = line.strip()
        if line:
            commands.put(line)
    commands.put(None)


def make_session(config):
    settings = {
        # The `s` suffix makes this an SSL listen socket: SSL torrents accept peers only there.
        "listen_interfaces": "127.0.0.1:0s",
        # Shoal's peer wire is TLS over TCP: no uTP (libtorrent would try it first and wait for it
        # to time out before falling back to TCP).
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        # Every peer of the test is on 127.0.0.1.
        "allow_multiple_connections_per_ip": True,
        "alert_mask": lt.alert.category_t.all_categories
        if config.get("log")
        else (
            lt.alert.category_t.error_notification
            | lt.alert.category_t.status_notification
            | lt.alert.category_t.peer_notification
            | lt.alert.category_t.connect_notification
            | lt.alert.category_t.storage_notification
        ),
    }
    return lt.session(settings)


def status_of(handle):
    s = handle.status()
    return {
        "state": str(s.state),
        "progress": s.progress,
        "seeding": s.is_seeding,
        "peers": s.num_peers,
        "downloaded": s.total_payload_download,
        "uploaded": s.total_payload_upload,
        "done": s.total_done,
        "error": s.errc.message() if s.errc.value() != 0 else "",
    }


def main():
    try:
        config = json.loads(sys.argv[1])
        info = lt.torrent_info(config["torrent"])
        certificate = (config["cert"], config["key"], config["dhParams"])
        save_path = config["savePath"]
    except (IndexError, KeyError, ValueError, RuntimeError) as err:
        emit("error", message="bad configuration: %s" % err)
        emit("exit", code=2)
        return 2

    session = make_session(config)
    params = lt.add_torrent_params()
    params.ti = info
    params.save_path = save_path
    params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
    handle = session.add_torrent(params)
    # libtorrent 2.0.8 loads the DH parameters file unconditionally (use_tmp_dh_file) and posts a
    # torrent error without one, although TLS 1.3 never uses it.
    handle.set_ssl_certificate(*certificate)
    emit("added", infoHash=str(info.info_hashes().v2), name=info.name())

    commands = queue.Queue()
    threading.Thread(target=read_commands, args=(commands,), daemon=True).start()
    deadline = time.monotonic() + float(config.get("timeoutS", 60))
    started = None
    code = 0
    while True:
        if time.monotonic() > deadline:
            emit("error", message="timed out", status=status_of(handle))
            code = 3
            break
        try:
            line = commands.get_nowait()
        except queue.Empty:
            line = ""
        if line is None:
            break
        if line:
            try:
                command = json.loads(line)
                cmd = command["cmd"]
                if cmd == "quit":
                    break
                if cmd == "connect":
                    started = started or time.monotonic()
                    handle.connect_peer((command["host"], int(command["port"])))
                elif cmd == "status":
                    emit("status", **status_of(handle))
                else:
                    emit("error", message="unknown command %r" % cmd)
            except (KeyError, TypeError, ValueError) as err:
                emit("error", message="bad command %r: %s" % (line, err))
        session.wait_for_alert(50)
        for alert in session.pop_alerts():
            kind = type(alert).__name__
            if kind == "listen_succeeded_alert" and alert.socket_type == lt.socket_type_t.tcp_ssl:
                emit("listening", port=alert.port)
            elif kind == "listen_failed_alert":
                emit("error", message=alert.message())
            elif kind == "torrent_checked_alert":
                emit("checked", seeding=handle.status().is_seeding)
            elif kind == "torrent_finished_alert" and started is not None:
                status = status_of(handle)
                emit("finished", downloaded=status["downloaded"], seconds=time.monotonic() - started)
            elif kind == "peer_connected_alert":
                emit("peer-connected", endpoint="%s:%d" % alert.endpoint, message=alert.message())
            elif kind == "peer_disconnected_alert":
                emit("peer-disconnected", endpoint="%s:%d" % alert.endpoint, message=alert.message())
            elif kind in ("torrent_error_alert", "file_error_alert", "peer_error_alert", "hash_failed_alert"):
                emit("error", kind=kind, message=alert.message())
            elif config.get("log"):
                emit("log", kind=kind, message=alert.message())
    emit("exit", code=code)
    return code


if __name__ == "__main__":
    sys.exit(main())

"""A libtorrent 2.0 SSL-torrent peer, driven by libtorrent-interop.e2e.spec.ts (loopback) and by the
multi-host lab (test/lab/libtorrent-run.ts, one per lab host).

Run with Debian's interpreter (/usr/bin/python3: python3-libtorrent is importable only there).

    lt_peer.py '{"torrent": ..., "savePath": ..., "cert": ..., "key": ..., "dhParams": ..., "timeoutS": 60}'

One libtorrent session with libtorrent's default settings (choking, seeding, request queues,
web seeds), except: TCP only (Shoal's peer wire is TLS over TCP, and libtorrent would try uTP
first and wait for it to time out before falling back to TCP), no DHT, local peer discovery,
UPnP or NAT-PMP (peers come from the driver, as a tracker would hand them out). One SSL torrent
(the torrent's `ssl-cert` is the fleet CA), the peer's certificate set with set_ssl_certificate,
an SSL listen socket. Optional configuration:

    "listen": "10.77.1.1:6881"   address and port of the SSL listen socket (default 127.0.0.1:0,
                                 port chosen by the system)
    "paused": true               add the torrent paused: it neither dials, accepts peers nor asks
                                 web seeds until the "start" command
    "progressS": 1               emit a "progress" event every that many seconds
    "log": true                  emit every other alert as a "log" event

Standard input takes JSON commands, one a line:

    {"cmd": "connect", "host": "127.0.0.1", "port": 1234}          dial a peer
    {"cmd": "start", "peers": [{"host": ..., "port": ...}, ...]}   resume, then dial every peer
    {"cmd": "status"}                                               answer with a "status" event
    {"cmd": "quit"}                                                 (end of input does the same)

Standard output gets JSON events, one a line, each with "time" (epoch milliseconds): "listening"
{port}, "added" {infoHash}, "checked" {seeding}, "first-piece" {piece}, "finished" {downloaded,
seconds}, "progress" and "status" {state, pieces, downloaded, webseedDownloaded, uploaded, ...},
"peer-connected" / "peer-disconnected" {endpoint, message}, "error" {message}, "log" {message},
and "exit" {code} last. "finished" counts from the first "connect" or "start". Exit code 0 after
"quit", 2 on a bad configuration, 3 on timeout.
"""

import json
import queue
import sys
import threading
import time

import libtorrent as lt


def emit(event, **fields):
    sys.stdout.write(json.dumps({"event": event, "time": time.time() * 1000, **fields}) + "\n")
    sys.stdout.flush()


def read_commands(commands):
    for line in sys.stdin:
        line = line.strip()
        if line:
            commands.put(line)
    commands.put(None)


def make_session(config):
    listen = config.get("listen", "127.0.0.1:0")
    settings = {
        # The `s` suffix makes this an SSL listen socket: SSL torrents accept peers only there.
        "listen_interfaces": listen + "s",
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "alert_mask": lt.alert.category_t.all_categories
        if config.get("log")
        else (
            lt.alert.category_t.error_notification
            | lt.alert.category_t.status_notification
            | lt.alert.category_t.peer_notification
            | lt.alert.category_t.connect_notification
            | lt.alert.category_t.storage_notification
            | lt.alert.category_t.piece_progress_notification
        ),
    }
    if listen.startswith("127."):
        # Every peer on loopback shares this address: libtorrent would otherwise keep one.
        settings["allow_multiple_connections_per_ip"] = True
    return lt.session(settings)


class WebseedCounter:
    """Payload bytes from web seeds. libtorrent counts them only per connection (peer_info), and
    forgets a connection once it closes, so each connection's count is sampled (keyed by its local
    port) and summed: bytes a connection received after its last sample are missed."""

    def __init__(self):
        self.by_connection = {}

    def sample(self, handle):
        for peer in handle.get_peer_info():
            if peer.connection_type == lt.peer_info.web_seed:
                key = peer.local_endpoint[1]
                self.by_connection[key] = max(self.by_connection.get(key, 0), peer.total_download)
        return sum(self.by_connection.values())


def status_of(handle, webseed, hash_failures):
    s = handle.status()
    return {
        "state": str(s.state),
        "progress": s.progress,
        "seeding": s.is_seeding,
        "paused": bool(s.flags & lt.torrent_flags.paused),
        "peers": s.num_peers,
        "pieces": s.num_pieces,
        "downloaded": s.total_payload_download,
        "webseedDownloaded": webseed.sample(handle),
        "uploaded": s.total_payload_upload,
        "redundant": s.total_redundant_bytes,
        "hashFailures": hash_failures,
        "done": s.total_done,
        "error": s.errc.message() if s.errc.value() != 0 else "",
    }


def main():
    try:
        config = json.loads(sys.argv[1])
        info = lt.torrent_info(config["torrent"])
        certificate = (config["cert"], config["key"], config["dhParams"])
        save_path = config["savePath"]
        progress_every = float(config.get("progressS", 0))
    except (IndexError, KeyError, ValueError, RuntimeError) as err:
        emit("error", message="bad configuration: %s" % err)
        emit("exit", code=2)
        return 2

    session = make_session(config)
    params = lt.add_torrent_params()
    params.ti = info
    params.save_path = save_path
    params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
    if config.get("paused"):
        params.flags |= lt.torrent_flags.paused
    handle = session.add_torrent(params)
    # libtorrent 2.0.8 loads the DH parameters file unconditionally (use_tmp_dh_file) and posts a
    # torrent error without one, although TLS 1.3 never uses it.
    handle.set_ssl_certificate(*certificate)
    emit("added", infoHash=str(info.info_hashes().v2), name=info.name())

    commands = queue.Queue()
    threading.Thread(target=read_commands, args=(commands,), daemon=True).start()
    deadline = time.monotonic() + float(config.get("timeoutS", 60))
    webseed = WebseedCounter()
    hash_failures = 0
    first_piece_seen = False
    next_progress = time.monotonic() + progress_every if progress_every > 0 else None
    started = None
    code = 0
    while True:
        if time.monotonic() > deadline:
            emit("error", message="timed out", status=status_of(handle, webseed, hash_failures))
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
                elif cmd == "start":
                    started = started or time.monotonic()
                    # A paused torrent ignores connect_peer: resume first.
                    handle.resume()
                    for peer in command["peers"]:
                        handle.connect_peer((peer["host"], int(peer["port"])))
                elif cmd == "status":
                    emit("status", **status_of(handle, webseed, hash_failures))
                else:
                    emit("error", message="unknown command %r" % cmd)
            except (KeyError, TypeError, ValueError) as err:
                emit("error", message="bad command %r: %s" % (line, err))
        if next_progress is not None and time.monotonic() >= next_progress:
            next_progress += progress_every
            emit("progress", **status_of(handle, webseed, hash_failures))
        session.wait_for_alert(50)
        for alert in session.pop_alerts():
            kind = type(alert).__name__
            if kind == "listen_succeeded_alert" and alert.socket_type == lt.socket_type_t.tcp_ssl:
                emit("listening", port=alert.port)
            elif kind == "listen_failed_alert":
                emit("error", message=alert.message())
            elif kind == "torrent_checked_alert":
                emit("checked", seeding=handle.status().is_seeding)
            elif kind == "piece_finished_alert":
                if not first_piece_seen and started is not None:
                    first_piece_seen = True
                    emit("first-piece", piece=alert.piece_index)
            elif kind == "torrent_finished_alert" and started is not None:
                status = status_of(handle, webseed, hash_failures)
                emit("finished", downloaded=status["downloaded"], seconds=time.monotonic() - started)
            elif kind == "peer_connected_alert":
                emit("peer-connected", endpoint="%s:%d" % alert.endpoint, message=alert.message())
            elif kind == "peer_disconnected_alert":
                emit("peer-disconnected", endpoint="%s:%d" % alert.endpoint, message=alert.message())
            elif kind in ("torrent_error_alert", "file_error_alert", "peer_error_alert", "hash_failed_alert"):
                if kind == "hash_failed_alert":
                    hash_failures += 1
                emit("error", kind=kind, message=alert.message())
            elif config.get("log"):
                emit("log", kind=kind, message=alert.message())
    emit("exit", code=code)
    return code


if __name__ == "__main__":
    sys.exit(main())

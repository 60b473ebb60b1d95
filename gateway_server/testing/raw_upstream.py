"""An upstream that writes exact bytes, for what no well-behaved fake would send.

``RawUpstream(script)`` listens on 127.0.0.1 (a free port) and, for every connection, reads one
request head and body, then calls ``script(conn, request)`` in that connection's thread: the script
writes whatever it wants (helpers: :func:`send_dribbled` one byte per write, :func:`reset` a TCP
reset instead of a close, :func:`hold` waiting until the peer hangs up). After the script returns
the connection is closed (unless the script reset it). ``requests`` holds each request's bytes,
``peer_closed`` is set when the gateway closed a connection the script was still writing to or
holding.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Self

__all__ = ["RawUpstream", "hold", "reset", "send_dribbled"]

Script = Callable[[socket.socket, bytes], None]


def reset(conn: socket.socket) -> None:
    """Close with a TCP reset (RST), as a crashing server or a middlebox does."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def send_dribbled(conn: socket.socket, data: bytes, pause: float = 0.0005) -> None:
    """Write ``data`` one byte per write (with ``TCP_NODELAY``), so every read sees a fragment."""
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for index in range(len(data)):
        conn.sendall(data[index : index + 1])
        if pause:
            time.sleep(pause)


def hold(conn: socket.socket, timeout: float = 10.0) -> bool:
    """Send nothing until the peer closes (True) or ``timeout`` passes (False)."""
    conn.settimeout(timeout)
    try:
        while conn.recv(65536):
            pass
        return True
    except TimeoutError:
        return False
    except OSError:
        return True


class RawUpstream:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[bytes] = []
        self.peer_closed = threading.Event()
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()
        self._thread.join(5)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                piece = conn.recv(65536)
                if not piece:
                    return
                data += piece
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(body) < length:
                piece = conn.recv(65536)
                if not piece:
                    return
                body += piece
            self.requests.append(head + b"\r\n\r\n" + body)
            self.script(conn, head + b"\r\n\r\n" + body)
        except OSError:
            self.peer_closed.set()
        finally:
            with contextlib.suppress(OSError):
                conn.close()

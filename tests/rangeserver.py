"""A real HTTP server on loopback that serves a folder with byte ranges, counts what it sends, and can
misbehave on purpose (ignore ranges, send more than asked, lie about the size, refuse)."""

from __future__ import annotations

import contextlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

_RANGE = re.compile(r"bytes=(\d+)-(\d+)?$")


@dataclass
class Log:
    requests: int = 0
    bytes_sent: int = 0
    paths: list[str] = field(default_factory=list)
    authorization: set[str] = field(default_factory=set)


@dataclass
class Behaviour:
    ignore_ranges: bool = False
    extra_bytes: int = 0          # sent after what was asked for
    lie_length: int | None = None  # Content-Length on HEAD
    status: dict[str, int] = field(default_factory=dict)  # path -> forced status (403, 404, 500)
    fail_first: int = 0           # this many requests answer 503 before the server behaves


def _handler(root: Path, log: Log, behaviour: Behaviour):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _file(self) -> Path | None:
            path = unquote(self.path.split("?")[0]).lstrip("/")
            target = (root / path).resolve()
            return target if target.is_file() and root in target.parents else None

        def _refused(self) -> bool:
            log.requests += 1
            log.paths.append(self.path)
            log.authorization.add(self.headers.get("Authorization", ""))
            if behaviour.fail_first > 0:
                behaviour.fail_first -= 1
                self.send_error(503)
                return True
            code = behaviour.status.get(self.path.split("?")[0])
            if code:
                self.send_error(code)
                return True
            return False

        def do_HEAD(self):
            if self._refused():
                return
            target = self._file()
            if target is None:
                self.send_error(404)
                return
            size = target.stat().st_size if behaviour.lie_length is None else behaviour.lie_length
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()

        def do_GET(self):
            if self._refused():
                return
            target = self._file()
            if target is None:
                self.send_error(404)
                return
            size = target.stat().st_size
            match = _RANGE.match(self.headers.get("Range", ""))
            start, end = (0, size - 1) if not match or behaviour.ignore_ranges else (
                int(match[1]), min(size - 1, int(match[2]) if match[2] else size - 1))
            with target.open("rb") as f:
                f.seek(start)
                body = f.read(end - start + 1) + b"\0" * behaviour.extra_bytes
            self.send_response(206 if match and not behaviour.ignore_ranges else 200)
            self.send_header("Content-Length", str(len(body)))
            if match and not behaviour.ignore_ranges:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            log.bytes_sent += len(body)  # before the write: the client may go on as soon as it has the body
            self.wfile.write(body)

    return Handler


@contextlib.contextmanager
def serve(root: Path, behaviour: Behaviour | None = None):
    """Yield ``(base_url, log, behaviour)`` for a server on 127.0.0.1 serving ``root``."""
    log, behaviour = Log(), behaviour or Behaviour()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(Path(root).resolve(), log, behaviour))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/", log, behaviour
    finally:
        server.shutdown()
        server.server_close()

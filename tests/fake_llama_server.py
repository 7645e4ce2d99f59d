"""Stand-ins for the llama-server binary, for tests that find, choose, start or stop one
without the real build: an executable that does nothing, and a Python script that listens on
the ``--port`` it is given and answers every GET (``/health`` included) with 200 ``{}``."""

from __future__ import annotations

import sys
from pathlib import Path

SCRIPT = """\
import http.server, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
"""


def write_fake_llama_server(path: Path) -> Path:
    """Write the stand-in at ``path``, executable with this interpreter, and return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\n{SCRIPT}")
    path.chmod(0o755)
    return path


def fake_executable(path: Path) -> Path:
    """An executable at ``path`` that exits at once with status 0; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path

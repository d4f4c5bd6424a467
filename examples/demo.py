"""`make demo`: start the reference server on a free port with a fresh key, run the
quickstart against it, stop the server, and exit with the quickstart's status."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    key = secrets.token_urlsafe(24)
    env = {**os.environ, "NEXUS_API_KEY": key}
    server = subprocess.Popen(
        [sys.executable, "-m", "nexus_reactive", "serve", "--host", "127.0.0.1", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        match = re.search(r"(ws://\S+)", line)
        if match is None:
            print(f"the server did not start: {line!r}", file=sys.stderr)
            return 1
        url = match.group(1)
        print(f"[demo] reference server at {url}")
        return subprocess.call([sys.executable, str(HERE / "quickstart.py"), "--url", url], env=env)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        print(f"[demo] server stopped (exit code {server.returncode})")


if __name__ == "__main__":
    raise SystemExit(main())

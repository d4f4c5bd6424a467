"""`make demo`: start the reference server on a free port with a fresh key, run the
quickstart against it, stop the server, and exit with the quickstart's status.

`make demo-solara` (``--solara``): the same server, streaming its answers word by word,
and the Solara chat (examples/solara_chat.py) against it until Ctrl-C, at
http://localhost:8765 (``--port`` to change it)."""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solara", action="store_true", help="run the Solara chat instead")
    parser.add_argument("--port", type=int, default=8765, help="the Solara app's port")
    args = parser.parse_args()
    key = secrets.token_urlsafe(24)
    env = {**os.environ, "NEXUS_API_KEY": key}
    serve = [sys.executable, "-m", "nexus_reactive", "serve", "--host", "127.0.0.1", "--port", "0"]
    if args.solara:  # the echo engine, streamed: answers are seen as they are written
        serve += ["--stream", "--stream-delay", "0.05"]
    server = subprocess.Popen(
        serve,
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
        if args.solara:
            return solara(url, args.port, env)
        return subprocess.call([sys.executable, str(HERE / "quickstart.py"), "--url", url], env=env)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        print(f"[demo] server stopped (exit code {server.returncode})")


def solara(url: str, port: int, env: dict[str, str]) -> int:
    """`solara run examples/solara_chat.py` against ``url`` until Ctrl-C."""
    env = {
        **env,
        "NEXUS_URL": url,
        # No usage statistics sent from a demo (and none can leave a closed network).
        "SOLARA_TELEMETRY_MIXPANEL_ENABLE": "False",
    }
    solara_bin = Path(sys.executable).parent / "solara"
    command = [str(solara_bin), "run", str(HERE / "solara_chat.py"), "--production"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    print(f"[demo] the Solara chat at http://127.0.0.1:{port}/ (Ctrl-C stops both)")
    app = subprocess.Popen(command, env=env)
    try:
        return app.wait()
    except KeyboardInterrupt:
        app.send_signal(signal.SIGINT)
        app.wait()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())

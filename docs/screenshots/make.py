"""Make the documentation's screenshots, and run the example notebook, against a real server.

    make screenshots            # all of them
    python docs/screenshots/make.py textual tk qt notebook

Each one starts the reference server (``nexus-reactive serve --port 0``, answering from
the docs) with a fresh key, then:

- ``textual``: drives ``nexus-reactive chat`` with Textual's pilot and saves its SVG
  screenshot (docs/images/textual-chat.svg);
- ``tk``: runs examples/tk_chat.py on a private X display (Xvfb) and grabs the window
  with ImageMagick's ``import`` (docs/images/tk-chat.png);
- ``qt``: runs examples/qt_chat.py and grabs the window with ``QWidget.grab``
  (docs/images/qt-chat.png; on Xvfb, or Qt's offscreen platform);
- ``notebook``: executes examples/notebook.ipynb in a kernel of this interpreter,
  commits its outputs (without the key, timings or paths), and renders the live view's
  HTML with headless Chromium (docs/images/notebook-live-view.png).

Needs: ``make install``, and from Debian ``xvfb imagemagick chromium`` (apt-get install).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "docs" / "images"
NOTEBOOK = ROOT / "examples" / "notebook.ipynb"
STARTUP_TIMEOUT = 30.0  # seconds
#: The questions the pictures ask: ones a new user would.
QUESTIONS = ("What is nexus-reactive?", "How does reconnection work?")

sys.path.insert(0, str(ROOT))  # the examples and the tests' Xvfb helper


@dataclass
class Server:
    url: str
    key: str


@contextlib.contextmanager
def reference_server() -> Iterator[Server]:
    """``nexus-reactive serve --port 0`` with a fresh key, stopped on exit."""
    key = secrets.token_urlsafe(24)
    command = [sys.executable, "-m", "nexus_reactive", "serve", "--port", "0"]
    with subprocess.Popen(
        command,
        env={**os.environ, "NEXUS_API_KEY": key},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], STARTUP_TIMEOUT)
            line = process.stdout.readline() if ready else ""
            match = re.search(r"listening on (ws://\S+)", line)
            if match is None:
                raise RuntimeError(f"the server did not start: {line!r}")
            yield Server(match.group(1), key)
        finally:
            process.terminate()
            process.wait(timeout=10)


@contextlib.contextmanager
def x_display(size: str = "1024x768x24") -> Iterator[str]:
    """A private Xvfb display, set as DISPLAY for the block."""
    from tests.xvfb import virtual_display

    with virtual_display(size) as display:
        before = os.environ.get("DISPLAY")
        os.environ["DISPLAY"] = display
        try:
            yield display
        finally:
            if before is None:
                os.environ.pop("DISPLAY", None)
            else:
                os.environ["DISPLAY"] = before


def wait(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


# -- the Textual chat -------------------------------------------------------------------


def textual(server: Server) -> Path:
    from textual.widgets import Input, Static

    from nexus_reactive.chat import ChatApp

    out = IMAGES / "textual-chat.svg"

    async def run() -> None:
        app = ChatApp(url=server.url, api_key=server.key)
        async with app.run_test(size=(100, 30)) as pilot:

            async def until(check: Callable[[], bool], what: str) -> None:
                deadline = time.monotonic() + STARTUP_TIMEOUT
                while not check():
                    if time.monotonic() > deadline:
                        raise TimeoutError(what)
                    await pilot.pause(0.05)

            def shown() -> str:
                return "\n".join(str(s.render()) for s in app.query(".turn").results(Static))

            await until(lambda: "Connected" in str(app.query_one("#status").render()), "connect")
            for question in QUESTIONS:
                app.query_one("#question", Input).value = question
                await pilot.press("enter")
                await until(lambda: "Nexus:" in shown().rsplit("You:", 1)[-1], "an answer")
            await pilot.press(*"Can I use it from Tk?")  # typed, not yet sent
            await pilot.pause(0.2)
            app.save_screenshot(out.name, path=str(out.parent))

    asyncio.run(run())
    return out


# -- the Tk example ---------------------------------------------------------------------


def tk(server: Server) -> Path:
    import tkinter

    from examples.tk_chat import TkChat

    out = IMAGES / "tk-chat.png"
    with x_display():
        root = tkinter.Tk()
        root.geometry("640x420+0+0")
        chat = TkChat(root, server.url, server.key)
        done: list[BaseException | None] = []

        def steps() -> Iterator[Callable[[], bool]]:
            yield lambda: chat.status["text"] == "Connected"
            for question in QUESTIONS:
                chat.entry.insert(0, question)
                chat.entry.event_generate("<Return>")
                yield lambda: "waiting" not in " ".join(chat.transcript())
            chat.entry.insert(0, "Can I use it from Qt?")
            yield lambda: True
            root.update_idletasks()
            x, y = root.winfo_rootx(), root.winfo_rooty()
            width, height = root.winfo_width(), root.winfo_height()
            subprocess.run(
                ["import", "-window", "root", "-crop", f"{width}x{height}+{x}+{y}", str(out)],
                check=True,
            )

        script = steps()
        condition = next(script)
        deadline = time.monotonic() + STARTUP_TIMEOUT

        def poll() -> None:
            nonlocal condition
            try:
                while condition():
                    condition = next(script)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Tk chat: {chat.transcript()}")
                root.after(20, poll)
            except StopIteration:
                done.append(None)
                chat.close()
            except BaseException as exc:
                done.append(exc)
                chat.close()

        root.after(0, poll)
        root.mainloop()
        if done and done[0] is not None:
            raise done[0]
    return out


# -- the Qt example ---------------------------------------------------------------------


def qt(server: Server) -> Path:
    out = IMAGES / "qt-chat.png"
    # In a process of its own: one QApplication per process, and the display it needs.
    code = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from PySide6 import QtCore, QtWidgets
from examples.qt_chat import QtChat
app = QtWidgets.QApplication([])
chat = QtChat({server.url!r}, {server.key!r})
chat.resize(640, 420)
chat.show()
questions = list({QUESTIONS!r})
deadline = time.monotonic() + {STARTUP_TIMEOUT}
def step():
    if time.monotonic() > deadline:
        sys.exit("Qt chat timed out: " + chat.status.text())
    shown = chat.conversation.toPlainText()
    if chat.status.text() == "Connected" and "waiting for the answer" not in shown:
        if questions:
            chat.entry.setText(questions.pop(0))
            chat.entry.returnPressed.emit()
        else:
            chat.entry.setText("Can I use it from Tk?")
            app.processEvents()
            chat.grab().save({str(out)!r})
            chat.close()
            app.quit()
            return
    QtCore.QTimer.singleShot(20, step)
QtCore.QTimer.singleShot(0, step)
app.exec()
"""
    env = {**os.environ, "QT_QPA_PLATFORM": "xcb"}
    with x_display() as display:
        result = subprocess.run([sys.executable, "-c", code], env={**env, "DISPLAY": display})
    if result.returncode != 0:
        print("qt: xcb failed, trying Qt's offscreen platform", file=sys.stderr)
        env["QT_QPA_PLATFORM"] = "offscreen"
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return out


# -- the notebook -----------------------------------------------------------------------


def notebook(server: Server) -> Path:
    """Execute the notebook, commit its outputs, and picture its live view."""
    import nbclient
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch)
        spec = home / "jupyter" / "kernels" / "python3"
        spec.mkdir(parents=True)
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        kernel = {"argv": argv, "display_name": "Python 3 (ipykernel)", "language": "python"}
        (spec / "kernel.json").write_text(json.dumps(kernel))
        env = {
            **os.environ,
            "JUPYTER_PATH": str(home / "jupyter"),
            "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
            "IPYTHONDIR": str(home / "ipython"),
            "NEXUS_URL": server.url,
            "NEXUS_API_KEY": server.key,
        }
        saved = {name: os.environ.get(name) for name in ("JUPYTER_PATH", "JUPYTER_RUNTIME_DIR")}
        os.environ.update({name: env[name] for name in saved})
        try:
            client = nbclient.NotebookClient(
                nb, kernel_name="python3", timeout=60, resources={"metadata": {"path": scratch}}
            )
            client.execute(env=env)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    _scrub(nb, server)
    nbformat.write(nb, NOTEBOOK)

    live = next(
        output["data"]["text/html"]
        for cell in nb.cells
        if cell.cell_type == "code" and "store.display()" in cell.source
        for output in cell.outputs
        if "text/html" in output.get("data", {})
    )
    return _render_html(live, IMAGES / "notebook-live-view.png")


def _scrub(nb: object, server: Server) -> None:
    """No key, no timings, no machine paths in what is committed."""
    from nbformat import NotebookNode

    assert isinstance(nb, NotebookNode)
    text = json.dumps(nb)
    if server.key in text:
        raise RuntimeError("the API key shows in an output: not writing the notebook")
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = {
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "name": "python3",
    }
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for output in cell.get("outputs", []):
            for mime, value in list(output.get("data", {}).items()):
                output["data"][mime] = _unpath(value)
            if "text" in output:
                output["text"] = _unpath(output["text"])


def _unpath(value: object) -> object:
    if isinstance(value, str):
        return value.replace(str(ROOT), ".").replace(str(Path.home()), "~")
    if isinstance(value, list):
        return [_unpath(item) for item in value]
    return value


def _render_html(fragment: str, out: Path) -> Path:
    """Headless Chromium's picture of an HTML fragment, as a notebook would show it."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise RuntimeError("chromium is not installed: apt-get install chromium")
    page = f"""<!doctype html><meta charset="utf-8">
<style>
  body {{ font: 14px/1.45 "DejaVu Sans", sans-serif; margin: 16px; color: #1f1f1f; }}
  .cell {{ border-left: 3px solid #42a5f5; padding: 6px 12px; }}
  .prompt {{ color: #9e9e9e; font: 13px monospace; margin-bottom: 6px; }}
  table {{ border-collapse: collapse; }} td, th {{ padding: 2px 8px; text-align: left; }}
</style>
<div class="prompt">Out: view = store.display()   (updated in place as the cells below ran)</div>
<div class="cell">{fragment}</div>"""
    with tempfile.TemporaryDirectory() as scratch:
        html_file = Path(scratch) / "view.html"
        html_file.write_text(page)
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={scratch}/profile",
                f"--screenshot={out}",
                "--window-size=900,420",
                html_file.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    subprocess.run(
        ["convert", str(out), "-trim", "-bordercolor", "white", "-border", "12", str(out)]
    )
    return out


MAKERS: dict[str, Callable[[Server], Path]] = {
    "textual": textual,
    "tk": tk,
    "qt": qt,
    "notebook": notebook,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("which", nargs="*", help=f"some of: {', '.join(MAKERS)} (default: all)")
    args = parser.parse_args()
    unknown = set(args.which) - set(MAKERS)
    if unknown:
        parser.error(f"unknown screenshot(s): {', '.join(sorted(unknown))}")
    IMAGES.mkdir(parents=True, exist_ok=True)
    with reference_server() as server:
        for name in args.which or MAKERS:
            made = MAKERS[name](server)
            print(f"{name}: {made.relative_to(ROOT)} ({made.stat().st_size // 1024} KiB)")
    assert not any(t.name == "nexus-reactive-loop" for t in threading.enumerate())
    return 0


if __name__ == "__main__":
    sys.exit(main())

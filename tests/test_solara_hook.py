"""nexus_reactive.solara.use_websocket rendered by reacton, without a browser, against
the real reference server (in asyncio debug mode, like every test here).

The component renders into ipywidgets; what it shows is read from the widgets. The
hook's connections run on their own loop threads and its renders on delivery
threads, so the test polls what the widgets say with ``wait_for``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nexus_reactive import ResponseMessage, UsageError
from nexus_reactive.server import EchoEngine

from .conftest import KEY, Nexus, ServerFactory
from .test_notebook import kernel_name  # noqa: F401  (a fixture: a kernel of this Python)
from .waiting import wait_for

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

reacton = pytest.importorskip("reacton", reason="the solara extra is not installed")
widgets = pytest.importorskip("reacton.ipywidgets")
kernel_context = pytest.importorskip("solara.server.kernel_context")
solara_kernel = pytest.importorskip("solara.server.kernel")

from nexus_reactive.solara import WebSocketHook, use_websocket  # noqa: E402


def settings(url: str) -> dict[str, Any]:
    return {"url": url, "api_key": KEY, "reconnect_interval": 0.05}


def answers(hook: WebSocketHook) -> list[str]:
    return [m.payload.answer for m in hook.messages if isinstance(m, ResponseMessage)]


class Probe:
    """What the component saw in each render, and its hook's last value."""

    def __init__(self) -> None:
        self.renders: list[WebSocketHook] = []
        self.threads: list[str] = []
        self.contexts: list[Any] = []

    @property
    def hook(self) -> WebSocketHook:
        return self.renders[-1]

    def record(self, hook: WebSocketHook) -> None:
        self.renders.append(hook)
        self.threads.append(threading.current_thread().name)
        if kernel_context.has_current_context():
            self.contexts.append(kernel_context.get_current_context())


def chat(probe: Probe, **options: Any) -> Any:
    @reacton.component
    def Chat() -> Any:
        hook = use_websocket(**options)
        probe.record(hook)
        status = "Connected" if hook.state.connected else str(hook.state.phase.value)
        return widgets.Label(value=" | ".join([status, *answers(hook)]))

    return Chat()


def library_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("nexus-reactive")]


async def test_connects_answers_and_closes_on_unmount(nexus: Nexus) -> None:
    probe = Probe()
    label, rc = reacton.render_fixed(chat(probe, **settings(nexus.url)), handle_error=False)
    # The first render: unpacks like the React hook, before anything was received.
    state, messages, send_message, clear_messages = probe.renders[0]
    assert not state.connected and len(messages) == 0
    assert callable(send_message) and callable(clear_messages)
    await wait_for(lambda: probe.hook.state.connected, message="connected")
    assert label.value == "Connected"
    assert nexus.stats.connections_open == 1

    probe.hook.send_message("What is Nexus?")
    await wait_for(lambda: label.value == "Connected | You asked: What is Nexus?")
    # Renders caused by the connection ran on a delivery thread, never on its loop.
    assert "nexus-reactive-solara-delivery" in probe.threads
    assert "nexus-reactive-loop" not in probe.threads

    probe.hook.clear_messages()
    await wait_for(lambda: label.value == "Connected", message="the history cleared")

    rc.close()  # unmount: the effect's cleanup closes the connection
    await wait_for(lambda: nexus.stats.connections_open == 0, message="the socket to close")
    await wait_for(lambda: library_threads() == [], message="the hook's threads to end")


async def test_reconnect_from_the_hook_opens_a_new_connection(nexus: Nexus) -> None:
    probe = Probe()
    label, rc = reacton.render_fixed(chat(probe, **settings(nexus.url)), handle_error=False)
    try:
        await wait_for(lambda: probe.hook.state.connected, message="connected")
        assert nexus.stats.connections_total == 1
        probe.hook.reconnect()  # a "Reconnect" button's handler: not the loop's thread
        await wait_for(
            lambda: nexus.stats.connections_total == 2 and probe.hook.state.connected,
            message="a second connection",
        )
        assert nexus.stats.connections_open == 1  # the first one was dropped
        probe.hook.send_message("after")
        await wait_for(lambda: label.value == "Connected | You asked: after")
        _state, _messages, _send, _clear = probe.hook  # still four values
    finally:
        rc.close()
    await wait_for(lambda: nexus.stats.connections_open == 0, message="the socket to close")
    await wait_for(lambda: library_threads() == [], message="the hook's threads to end")
    with pytest.raises(UsageError, match="closed"):
        probe.hook.reconnect()  # unmounted: its connection is gone


def test_reconnect_on_a_hook_built_by_hand_says_so() -> None:
    hook = WebSocketHook(None, None, lambda query: "", lambda: None)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="made by use_websocket"):
        hook.reconnect()


async def test_each_instance_has_its_own_connection_and_answers(nexus: Nexus) -> None:
    first, second = Probe(), Probe()
    label1, rc1 = reacton.render_fixed(chat(first, **settings(nexus.url)), handle_error=False)
    label2, rc2 = reacton.render_fixed(chat(second, **settings(nexus.url)), handle_error=False)
    try:
        await wait_for(lambda: first.hook.state.connected and second.hook.state.connected)
        assert nexus.stats.connections_open == 2  # never shared
        first.hook.send_message("one")
        second.hook.send_message("two")
        await wait_for(lambda: label1.value == "Connected | You asked: one")
        await wait_for(lambda: label2.value == "Connected | You asked: two")
    finally:
        rc1.close()
        rc2.close()
    await wait_for(lambda: nexus.stats.connections_open == 0)


async def test_new_settings_close_the_old_connection_and_open_a_new_one(
    start_nexus: ServerFactory,
) -> None:
    old, new = await start_nexus(), await start_nexus()
    probe = Probe()
    set_url: list[Callable[[str], None]] = []

    @reacton.component
    def Switchable() -> Any:
        url, set_url_ = reacton.use_state(old.url)
        set_url.append(set_url_)
        hook = use_websocket(**settings(url))
        probe.record(hook)
        return widgets.Label(value=" | ".join([url, *answers(hook)]))

    label, rc = reacton.render_fixed(Switchable(), handle_error=False)
    try:
        await wait_for(lambda: probe.hook.state.connected)
        probe.hook.send_message("to the old server")
        await wait_for(lambda: "You asked: to the old server" in label.value)
        set_url[-1](new.url)
        # The new connection's values at once: not the old one's history or state.
        assert label.value == new.url
        await wait_for(lambda: old.stats.connections_open == 0, message="the old socket closed")
        await wait_for(lambda: probe.hook.state.connected and new.stats.connections_open == 1)
        probe.hook.send_message("to the new server")
        await wait_for(lambda: label.value == f"{new.url} | You asked: to the new server")
        assert new.stats.asks_received == 1
    finally:
        rc.close()
    await wait_for(lambda: new.stats.connections_open == 0)


async def test_updates_render_inside_the_kernel_context_they_belong_to(nexus: Nexus) -> None:
    """Two virtual kernels (two tabs of `solara run`): each component renders, also
    when its connection delivers, inside its own kernel, never the other's or none."""
    kernels = [
        kernel_context.VirtualKernelContext(id=name, kernel=solara_kernel.Kernel(), session_id="s")
        for name in ("tab-1", "tab-2")
    ]
    probes = [Probe(), Probe()]
    rendered = []
    try:
        for kernel, probe in zip(kernels, probes, strict=True):
            with kernel:
                rendered.append(
                    reacton.render_fixed(chat(probe, **settings(nexus.url)), handle_error=False)
                )
        for probe, name in zip(probes, ("one", "two"), strict=True):
            await wait_for(lambda p=probe: p.hook.state.connected)
            probe.hook.send_message(name)
        await wait_for(lambda: all(answers(p.hook) for p in probes), message="both answered")
        for kernel, probe in zip(kernels, probes, strict=True):
            assert "nexus-reactive-solara-delivery" in probe.threads
            assert len(probe.contexts) == len(probe.renders)
            assert all(context is kernel for context in probe.contexts)
        # The delivery threads leave no context behind them.
        assert all(
            context is None or context in kernels
            for context in kernel_context.current_context.values()
        )
    finally:
        for kernel, (_, rc) in zip(kernels, rendered, strict=True):
            with kernel:  # what Solara does when a tab's kernel closes: unmount its app
                rc.close()
    await wait_for(lambda: nexus.stats.connections_open == 0)


async def test_a_streamed_answer_renders_at_most_at_the_batch_rate(
    start_nexus: ServerFactory,
) -> None:
    """Sixty pieces written back to back: the component renders a few times, not sixty,
    and ends on the whole answer."""
    server = await start_nexus(engine=EchoEngine(stream=True))
    probe = Probe()
    label, rc = reacton.render_fixed(
        chat(probe, batch_interval=0.2, **settings(server.url)), handle_error=False
    )
    try:
        await wait_for(lambda: probe.hook.state.connected)
        question = " ".join(f"w{i}" for i in range(58))
        before = len(probe.renders)
        probe.hook.send_message(question)
        await wait_for(lambda: label.value == f"Connected | You asked: {question}")
        assert server.stats.chunks_sent >= 50
        assert len(probe.renders) - before < 20
    finally:
        rc.close()
    await wait_for(lambda: server.stats.connections_open == 0)


#: The example's page in a notebook: rendered and displayed as a cell's output, then
#: driven as a user would (type, click Send), in a real Jupyter kernel.
NOTEBOOK_CELLS = [
    """\
import sys, time
sys.path.insert(0, EXAMPLES)
import ipyvue, ipyvuetify as v, reacton
import solara_chat

box, rc = reacton.render(solara_chat.Page(), handle_error=False)
display(box)

def texts():
    found = rc.find(ipyvue.Html).widgets
    return [w.children[0] for w in found if w.children and isinstance(w.children[0], str)]

def wait(condition, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: {texts()}"
        time.sleep(0.02)
""",
    """\
wait(lambda: "Connected" in texts(), "connected")
rc.find(v.TextField).widget.v_model = "Asked in a notebook"
send = rc.find(v.Btn, children=["Send"]).widget
wait(lambda: not send.disabled, "Send enabled")  # the page re-rendered with the text
send.click()
wait(lambda: "Nexus: You asked: Asked in a notebook" in texts(), "the answer")
print(texts())
""",
    "rc.close()",
]


async def test_the_example_page_works_in_a_jupyter_kernel(
    nexus: Nexus,
    kernel_name: str,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    cells = [NOTEBOOK_CELLS[0].replace("EXAMPLES", repr(str(EXAMPLES))), *NOTEBOOK_CELLS[1:]]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = nbclient.NotebookClient(
        notebook,
        kernel_name=kernel_name,
        timeout=120,
        startup_timeout=120,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    env = {**os.environ, "NEXUS_URL": nexus.url, "NEXUS_API_KEY": KEY, "PYTHONASYNCIODEBUG": "1"}
    with (tmp_path / "kernel.log").open("w") as kernel_stderr:
        await client.async_execute(env=env, stderr=kernel_stderr)
    printed = "".join(o.get("text", "") for o in notebook.cells[1].outputs)
    assert "'You: Asked in a notebook', 'Nexus: You asked: Asked in a notebook'" in printed
    assert nexus.stats.connections_total == 1
    await wait_for(lambda: nexus.stats.connections_open == 0, message="closed on unmount")


async def test_inline_callables_and_ssl_contexts_do_not_reconnect_on_each_render(
    nexus: Nexus,
) -> None:
    """A lambda or an SSLContext written in the component body is new at every render:
    the hook keys its connection on the settings' values, so re-rendering keeps the
    connection, and the live connection calls the newest render's callables."""
    import ssl

    probe = Probe()
    bump: list[Callable[[int], None]] = []
    keys_given: list[int] = []

    @reacton.component
    def Inline() -> Any:
        count, set_count = reacton.use_state(0)
        bump.append(set_count)

        def key() -> str:
            keys_given.append(count)  # which render's callable the connection calls
            return KEY

        hook = use_websocket(
            url=nexus.url,
            api_key=key,
            reconnect_interval=0.05,
            should_reconnect=lambda exc: True,
            ssl=ssl.create_default_context(),
        )
        probe.record(hook)
        return widgets.Label(value=f"{count} {hook.state.phase.value}")

    label, rc = reacton.render_fixed(Inline(), handle_error=False)
    try:
        await wait_for(lambda: probe.hook.state.connected, message="connected")
        for n in range(1, 6):
            bump[-1](n)
            await wait_for(lambda n=n: label.value == f"{n} connected", message=f"render {n}")
        assert nexus.stats.connections_total == 1  # one connection across the renders
        store = probe.hook.send_message.__self__
        assert store.service.config.api_key() == KEY and keys_given[-1] == 5  # the newest
    finally:
        rc.close()
    await wait_for(lambda: nexus.stats.connections_open == 0, message="the socket to close")
    await wait_for(lambda: library_threads() == [], message="the hook's threads to end")


def documented_page(url: str, folder: Path) -> Any:
    """The component docs/solara.md shows first (a fragment there), pointed at ``url``:
    written to a file in ``folder`` and imported, so that Solara can read its source."""
    text = (EXAMPLES.parent / "docs" / "solara.md").read_text()
    block = re.search(r"<!-- fragment: a Solara component.*?-->\n```python\n(.*?)```", text, re.S)
    assert block is not None, "docs/solara.md's first component is gone"
    path = folder / "documented_page.py"
    path.write_text(block.group(1).replace("ws://localhost:8000", url))
    spec = importlib.util.spec_from_file_location("documented_page", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Page


async def test_the_documented_component_asks_clears_and_reconnects(
    nexus: Nexus, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ipyvue = pytest.importorskip("ipyvue")
    v = pytest.importorskip("ipyvuetify")
    monkeypatch.setenv("NEXUS_API_KEY", KEY)  # the docs' component takes its key from there
    _box, rc = reacton.render(documented_page(nexus.url, tmp_path)(), handle_error=False)

    def shown() -> str:
        """The text and the rendered Markdown (a template) the page shows."""
        texts = [str(w.children[0]) for w in rc.find(ipyvue.Html).widgets if w.children]
        markdown = [str(w.template) for w in rc.find(ipyvue.VueTemplate).widgets]
        return "\n".join(texts + markdown)

    def button(label: str) -> Any:
        return rc.find(v.Btn, children=[label]).widget

    try:
        await wait_for(lambda: "Connected" in shown(), message="connected")
        button("Ask").click()
        await wait_for(lambda: "You asked: What is Nexus?" in shown(), message="the answer")
        button("Reconnect").click()  # the hook's reconnect(), wired as the docs show
        await wait_for(
            lambda: nexus.stats.connections_total == 2 and "Connected" in shown(),
            message="a second connection",
        )
        assert nexus.stats.connections_open == 1
        button("Clear").click()
        await wait_for(lambda: "You asked" not in shown(), message="the history cleared")
    finally:
        rc.close()
    await wait_for(lambda: nexus.stats.connections_open == 0, message="closed on unmount")
    await wait_for(lambda: library_threads() == [], message="the hook's threads to end")

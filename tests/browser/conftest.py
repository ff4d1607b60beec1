"""The browser tests' machinery: JupyterLab on a free local port, Debian's Chromium driven by Playwright.

* ``lab``: one JupyterLab server for the session, started by the tests (ci profile, one thread) on a
  copy of the notebooks in a temporary folder, so Run All never writes outputs into the repository.
* ``browser``: headless Chromium from the system (``/usr/bin/chromium``, or ``MEDDIFF_CHROMIUM``);
  Playwright never downloads a browser here. Missing, the tests FAIL with the command that installs it.
* ``page``: a fresh page in which every request to a host other than this machine is aborted (as
  offline, or behind a firewall that blocks CDNs), console errors are collected, and a screenshot is
  written to the test's output folder at the end.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("MEDDIFF_CHROMIUM", "/usr/bin/chromium")
INSTALL_CHROMIUM = "apt-get install -y chromium (as root; or make browser-setup)"
INSTALL_PLAYWRIGHT = "pip install 'meddiff-lab[browser]' (make setup does)"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
#: flags for Chromium on a machine with no network (background services would fail, many at a time)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

#: JupyterLab settings for the tests: every cell in the page (no windowing), no news or update checks
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives JupyterLab in Chromium (tests/browser)")
    config.addinivalue_line("markers", "browser_all: a long browser test, run with MEDDIFF_BROWSER_ALL=1 only")


def pytest_collection_modifyitems(config, items):
    """Mark every test here ``browser``; leave out (deselect, not skip) the long ones unless asked for."""
    keep, left_out = [], []
    for item in items:
        if "tests/browser" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)
            if item.get_closest_marker("browser_all") and os.environ.get("MEDDIFF_BROWSER_ALL", "") in ("", "0"):
                left_out.append(item)
                continue
        keep.append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = keep


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Lab:
    """A running JupyterLab: ``url(path)`` gives an address with the token; ``root`` is its folder."""

    def __init__(self, root: Path, port: int, token: str, process: subprocess.Popen, log: Path):
        self.root, self.port, self.token, self.process, self.log = root, port, token, process, log

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}?token={self.token}"

    def shutdown_kernels(self) -> None:
        """Shut down every kernel (each test's notebook has its own; they would pile up in memory)."""
        with urllib.request.urlopen(self.url("api/kernels"), timeout=10) as response:
            kernels = json.loads(response.read())
        for kernel in kernels:
            request = urllib.request.Request(self.url(f"api/kernels/{kernel['id']}"), method="DELETE")
            try:
                urllib.request.urlopen(request, timeout=30).close()
            except OSError:
                pass


@pytest.fixture(scope="session")
def lab(tmp_path_factory) -> Lab:
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    (root / "data").symlink_to(REPO / "data")  # the notebooks' DATA_DIR is ../data
    (root / "configs").symlink_to(REPO / "configs")  # 05 loads ../configs/student_phantom32.yaml
    settings = root / ".lab-settings"
    for name, values in LAB_SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port, token = _free_port(), "meddiff-browser-tests"
    env = dict(
        os.environ,
        MEDDIFF_PROFILE="ci",
        OMP_NUM_THREADS="1",
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(root / ".lab-workspaces"),
        JUPYTER_RUNTIME_DIR=str(root / ".runtime"),
        MEDDIFF_ITK_TIMEOUT="8",
    )
    for name in ("MEDDIFF_HEADLESS", "MEDDIFF_VIEWER", "MEDDIFF_METRICS_FILE"):
        env.pop(name, None)
    log = root / "jupyterlab.log"
    command = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        f"--port={port}",
        "--ip=127.0.0.1",
        f"--ServerApp.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.port_retries=0",
        "--LabApp.news_url=",
        "--ServerApp.terminals_enabled=False",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    process = subprocess.Popen(
        command, cwd=root, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )
    server = Lab(root, port, token, process, log)
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(server.url("api/status"), timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGTERM)
            pytest.fail(f"JupyterLab did not start on port {port}:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    yield server
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"the browser tests need Chromium at {CHROMIUM} (or set MEDDIFF_CHROMIUM): {INSTALL_CHROMIUM}",
            pytrace=False,
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"the browser tests need Playwright for Python: {INSTALL_PLAYWRIGHT}", pytrace=False)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class PageLog:
    """What a page did: console errors, page errors, and the external requests that were blocked."""

    def __init__(self):
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.blocked: list[str] = []

    def unexpected_errors(self) -> list[str]:
        """Console errors not explained by a blocked external request (which fail as offline)."""
        blocked_hosts = {urlparse(u).netloc for u in self.blocked}
        errors = []
        for text in self.console_errors + self.page_errors:
            if "net::ERR_FAILED" in text or "ERR_BLOCKED" in text:
                continue
            if any(host and host in text for host in blocked_hosts):
                continue
            errors.append(text)
        return errors


@pytest.fixture
def page(browser, lab, request, tmp_path):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    record = PageLog()

    def route(route_request):
        host = urlparse(route_request.request.url).hostname or ""
        if route_request.request.url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
            route_request.continue_()
        else:
            record.blocked.append(route_request.request.url)
            route_request.abort("blockedbyclient")

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda message: record.console_errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: record.page_errors.append(str(error)))
    page.log = record
    page.screenshots = tmp_path
    yield page
    try:
        page.screenshot(
            path=str(tmp_path / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', request.node.name)}-end.png"), full_page=False
        )
    finally:
        context.close()
        lab.shutdown_kernels()


@pytest.fixture(scope="session")
def driver():
    """tests/browser/lab_driver.py: open a notebook, Run All, operate widgets (see there)."""
    spec = importlib.util.spec_from_file_location("lab_driver", Path(__file__).with_name("lab_driver.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

"""A private JupyterLab (or Notebook 7) server for the browser tests: temp dirs, the current interpreter's kernel,
no network; optionally with front-end extensions disabled and variables set in the kernel's environment."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

KERNEL_NAME = "python3"
START_TIMEOUT_S = 90.0
WIDGET_EXTENSIONS = ("@jupyter-widgets/jupyterlab-manager", "anywidget")  # what VS Code and Colab lack for plotly


@dataclass
class LabServer:
    """A running ``jupyter lab`` subprocess serving ``root`` on 127.0.0.1."""

    url: str
    token: str
    root: Path
    process: subprocess.Popen
    log_path: Path
    app: str = "lab"  # or "notebook" (Notebook 7)

    def notebook_url(self, name: str) -> str:
        """Address that opens ``root/name`` (JupyterLab: in a fresh, reset workspace), logged in with the token."""
        if self.app == "notebook":
            return f"{self.url}/notebooks/{name}?token={self.token}"
        return f"{self.url}/lab/tree/{name}?reset&token={self.token}"

    def stop(self) -> None:
        """Terminate the server (and so its kernels); kill it if it does not exit within 15 s."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)


def start_lab(
    base: Path,
    app: str = "lab",
    disabled_extensions: tuple[str, ...] = (),
    kernel_env: dict[str, str] | None = None,
) -> LabServer:
    """Start JupyterLab with every Jupyter directory under ``base`` and wait until its API answers.

    Args:
        base: a fresh temporary directory.
        app: "lab" (``jupyter lab``) or "notebook" (``jupyter notebook``, Notebook 7).
        disabled_extensions: front-end extensions to disable (``labconfig/page_config.json`` in the config dir).
        kernel_env: variables set in the kernel's environment only (its kernel spec's ``env``).

    Raises:
        RuntimeError: when the server exits or does not answer within ``START_TIMEOUT_S``; the message holds
            the end of its log.
    """
    root = base / "root"
    root.mkdir(parents=True, exist_ok=True)
    env = lab_environment(base, kernel_env)
    if disabled_extensions:
        write_page_config(Path(env["JUPYTER_CONFIG_DIR"]), disabled_extensions)
    port, token = free_port(), secrets.token_hex(16)
    log_path = base / "jupyterlab.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            lab_command(root, port, token, env, app),
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = LabServer(f"http://127.0.0.1:{port}", token, root, process, log_path, app)
    wait_until_ready(server)
    return server


def lab_command(root: Path, port: int, token: str, env: dict[str, str], app: str = "lab") -> list[str]:
    """``jupyter lab`` (or ``jupyter notebook``) on 127.0.0.1 only, no browser, no news or update checks, settings
    and workspaces in temp dirs."""
    lab = "LabApp" if app == "lab" else "JupyterNotebookApp"
    command = [
        sys.executable,
        "-m",
        "jupyterlab" if app == "lab" else "notebook",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--ServerApp.open_browser=False",
        "--ServerApp.allow_remote_access=False",
        f"--ServerApp.root_dir={root}",
        f"--IdentityProvider.token={token}",
        f"--{lab}.user_settings_dir={env['JUPYTERLAB_SETTINGS_DIR']}",
        f"--{lab}.workspaces_dir={env['JUPYTERLAB_WORKSPACES_DIR']}",
        "--ServerApp.terminals_enabled=False",
    ]
    if app == "lab":
        command += [
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
        ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--ServerApp.allow_root=True")  # containers and CI runners often run as root
    return command


def lab_environment(base: Path, kernel_env: dict[str, str] | None = None) -> dict[str, str]:
    """Environment whose Jupyter config, data, runtime, settings and IPython dirs all live under ``base``.

    ``JUPYTER_PATH`` puts first a kernel spec named ``python3`` that runs this interpreter, so the kernel sees
    the same packages as the tests; nothing is installed outside ``base``.
    """
    dirs = {
        name: base / sub
        for name, sub in (
            ("JUPYTER_CONFIG_DIR", "config"),
            ("JUPYTER_DATA_DIR", "data"),
            ("JUPYTER_RUNTIME_DIR", "runtime"),
            ("JUPYTER_PATH", "path"),
            ("JUPYTERLAB_SETTINGS_DIR", "user-settings"),
            ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
            ("IPYTHONDIR", "ipython"),
            ("MPLCONFIGDIR", "matplotlib"),
        )
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    write_kernel_spec(dirs["JUPYTER_PATH"] / "kernels" / KERNEL_NAME, kernel_env)
    write_quiet_settings(dirs["JUPYTERLAB_SETTINGS_DIR"])
    env = {**os.environ, **{name: str(path) for name, path in dirs.items()}}
    env.pop("JUPYTER_PREFER_ENV_PATH", None)
    return env


def write_kernel_spec(directory: Path, env: dict[str, str] | None = None) -> None:
    """A ``python3`` kernel spec that starts ipykernel with ``sys.executable`` (``env`` added to its environment)."""
    directory.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (nbdiag tests)",
        "language": "python",
        "metadata": {"debugger": False},
    }
    if env:
        spec["env"] = env
    (directory / "kernel.json").write_text(json.dumps(spec, indent=1))


def write_page_config(config_dir: Path, disabled: tuple[str, ...]) -> None:
    """Disable front-end extensions for every Jupyter app using ``config_dir`` (``labconfig/page_config.json``)."""
    path = config_dir / "labconfig" / "page_config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"disabledExtensions": dict.fromkeys(disabled, True)}, indent=1))


def write_quiet_settings(settings_dir: Path) -> None:
    """User settings that turn off JupyterLab's news fetch and update check (no network, no toast)."""
    notification = settings_dir / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True, exist_ok=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_ready(server: LabServer) -> None:
    """Poll ``/api/status`` with the token until it answers 200; fail early if the process exits."""
    deadline = time.monotonic() + START_TIMEOUT_S
    request = urllib.request.Request(f"{server.url}/api/status", headers={"Authorization": f"token {server.token}"})
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {server.process.returncode}:\n{log_tail(server)}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    server.stop()
    raise RuntimeError(f"jupyter lab did not answer within {START_TIMEOUT_S:.0f} s:\n{log_tail(server)}")


def kernel_state(server: LabServer, name: str) -> str | None:
    """Execution state of the kernel of notebook ``name`` (``idle``, ``busy``, ...), None while it has no session."""
    request = urllib.request.Request(f"{server.url}/api/sessions", headers={"Authorization": f"token {server.token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        sessions = json.load(response)
    for session in sessions:
        if session.get("path") == name and session.get("kernel"):
            return session["kernel"].get("execution_state")
    return None


def log_tail(server: LabServer, chars: int = 4000) -> str:
    """The last ``chars`` characters of the server's log."""
    return server.log_path.read_text(errors="replace")[-chars:]


def shut_down(server: LabServer, name: str) -> None:
    """End the session (and so the kernel) of notebook ``name``, if it has one: a kernel left running holds its
    memory (torch, the notebook's data) until the server stops."""
    headers = {"Authorization": f"token {server.token}"}
    with urllib.request.urlopen(urllib.request.Request(f"{server.url}/api/sessions", headers=headers), timeout=5) as r:
        sessions = json.load(r)
    for session in sessions:
        if session.get("path") == name:
            request = urllib.request.Request(f"{server.url}/api/sessions/{session['id']}", headers=headers)
            request.method = "DELETE"
            urllib.request.urlopen(request, timeout=30).close()

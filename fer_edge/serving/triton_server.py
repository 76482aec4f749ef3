"""Runs the `tritonserver` binary that the `nvidia-pytriton` wheel bundles (CPU-only hosts
included) on a model repository, on localhost ports.

    with TritonServer("triton_models") as server:       # free ports chosen, waits until ready
        rec = Recognizer(f"triton://{server.http_url}/fer")

The wheel's Python API is not used (it pins numpy < 2); only its server binary, its Python
backend and the stub built for this interpreter's Python version. The stub embeds libpython of
the same version and runs model.py in a small environment of its own (`prepare_stub_env`:
numpy < 2, which the bundled stub needs, the runtimes, and this fer_edge linked in), so the
client side keeps whatever numpy it has.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class TritonUnavailable(RuntimeError):
    """No Triton server binary on this machine (pip install nvidia-pytriton)."""


STUB_ENV_VAR = "FER_EDGE_TRITON_STUB_ENV"


def default_stub_env() -> Path:
    from fer_edge.paths import cache_dir

    return Path(os.environ.get(STUB_ENV_VAR) or cache_dir() / "triton_stub_env")


def prepare_stub_env(path: str | Path | None = None, runtimes=("onnxruntime",), extra_pip_args=()) -> Path:
    """Makes the Python environment the Python backend's stub runs model.py in: a venv of this
    Python version with numpy < 2 (the bundled stub's pybind11 reads numpy 1.x arrays: with
    numpy 2 every tensor arrives as zeros and leaves empty), the inference runtimes, and this
    fer_edge package linked in (a .pth file, so the stub runs the code this process runs).
    Installs from the package index once; returns the environment's folder."""
    import fer_edge

    path = Path(path or default_stub_env())
    python = path / "bin" / "python"
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *extra_pip_args, "numpy<2", *runtimes], check=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    link_dir = path / "fer_edge_link"
    link_dir.mkdir(exist_ok=True)
    link = link_dir / "fer_edge"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(Path(fer_edge.__file__).resolve().parent, target_is_directory=True)
    (Path(site) / "fer_edge_link.pth").write_text(str(link_dir) + "\n")
    return path


def check_stub_env(path: str | Path) -> Path:
    """A prepared stub environment, or a clear error saying how to make one."""
    path = Path(path)
    python = path / "bin" / "python"
    if not python.is_file():
        raise FileNotFoundError(f"no Python environment for Triton's Python backend at {path}: make one with "
                                f"`fer-edge serve --prepare-stub-env {path}` (or set {STUB_ENV_VAR})")
    probe = subprocess.run([str(python), "-c", "import numpy, fer_edge.runtime.backends; print(numpy.__version__)"],
                           capture_output=True, text=True)
    if probe.returncode != 0 or not probe.stdout.strip().startswith("1."):
        raise RuntimeError(f"{path}: the Triton stub environment needs numpy < 2 and fer_edge importable "
                           f"({(probe.stdout + probe.stderr).strip()[-300:]}); rebuild it with "
                           f"`fer-edge serve --prepare-stub-env {path}`")
    return path


def server_distribution() -> tuple[Path, Path, Path]:
    """(tritonserver binary, its bundled libraries, the Python backend stub for this Python)."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("pytriton")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise TritonUnavailable("the Triton server binary comes with the nvidia-pytriton wheel: "
                                "pip install --no-deps nvidia-pytriton (fer_edge uses only its server binary)")
    root = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
    binary = root / "bin" / "tritonserver"
    stub = root / "python_backend_stubs" / f"{sys.version_info[0]}.{sys.version_info[1]}" / "triton_python_backend_stub"
    libs = root.parent.parent / "nvidia_pytriton.libs"
    for p in (binary, stub):
        if not p.is_file():
            raise TritonUnavailable(f"{p} is missing from the nvidia-pytriton installation (Python "
                                    f"{sys.version_info[0]}.{sys.version_info[1]} stub, server binary)")
    return binary, libs, stub


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TritonServer:
    """A local tritonserver process on `repository` (HTTP and gRPC on localhost; ports chosen
    free unless given). `start()` returns when the server and every model are ready, or raises
    with the server's log; `stop()` (or leaving the `with` block) ends it."""

    def __init__(self, repository: str | Path, http_port: int | None = None, grpc_port: int | None = None,
                 startup_timeout: float = 120.0, log_verbose: int = 0, stub_env: str | Path | None = None):
        self.repository = Path(repository).resolve()
        if not self.repository.is_dir():
            raise FileNotFoundError(f"model repository {self.repository} does not exist")
        self.http_port, self.grpc_port = http_port or free_port(), grpc_port or free_port()
        self.startup_timeout, self.log_verbose = startup_timeout, log_verbose
        self.stub_env = stub_env
        self.process: subprocess.Popen | None = None
        self._workdir: Path | None = None
        self.log_path: Path | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def _backends(self, stub: Path) -> Path:
        """A backend directory with the Python backend and this interpreter's stub (the bundled
        tree keeps one stub per Python version apart)."""
        binary_root = stub.parents[2]
        backends = self._workdir / "backends"
        shutil.copytree(binary_root / "backends", backends)
        shutil.copy(stub, backends / "python" / "triton_python_backend_stub")
        return backends

    def start(self) -> "TritonServer":
        binary, libs, stub = server_distribution()
        self.stub_env = check_stub_env(self.stub_env or default_stub_env())
        self._workdir = Path(tempfile.mkdtemp(prefix="fer_edge_triton_"))
        backends = self._backends(stub)
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(libs), env.get("LD_LIBRARY_PATH", "")) if p)
        # the stub embeds libpython and takes its prefix and site-packages from the `python` first
        # on PATH (PYTHONPATH is not read): the stub environment's
        env["PATH"] = os.pathsep.join([str(Path(self.stub_env) / "bin"), env.get("PATH", "")])
        env.pop("PYTHONPATH", None)
        cmd = [str(binary), f"--model-repository={self.repository}", f"--backend-directory={backends}",
               f"--http-port={self.http_port}", f"--grpc-port={self.grpc_port}", "--http-address=127.0.0.1",
               "--grpc-address=127.0.0.1", "--allow-metrics=false", "--exit-on-error=true",
               "--strict-readiness=true", f"--log-verbose={self.log_verbose}",
               f"--cache-directory={self._workdir / 'caches'}"]
        self.log_path = self._workdir / "tritonserver.log"
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()  # no process or temporary folder outlives a failed start
            raise
        return self

    def log(self, tail: int = 4000) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return self.log_path.read_text(errors="replace")[-tail:]

    def _wait_ready(self) -> None:
        import tritonclient.http as http

        client = http.InferenceServerClient(self.http_url)
        deadline = time.monotonic() + self.startup_timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"tritonserver exited with status {self.process.returncode}:\n{self.log()}")
                try:
                    if client.is_server_ready():
                        return
                except Exception:  # not listening yet
                    pass
                time.sleep(0.25)
        finally:
            client.close()
        raise TimeoutError(f"tritonserver was not ready within {self.startup_timeout:.0f} s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> "TritonServer":
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

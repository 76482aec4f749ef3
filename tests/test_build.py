"""Builds that work on every CUDA toolkit fer_edge meets: the default architectures follow the
nvcc version (JetPack 6's CUDA 12.2/12.6 cannot target sm_100/sm_120; CUDA 13 cannot target
Xavier's sm_72), and FER_EDGE_CUDA_ARCHS restricts a build to the architectures it names."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None and os.environ.get("FER_EDGE_EXPECT_CUDA") != "1",
                                reason="no nvcc on this machine (CI sets FER_EDGE_EXPECT_CUDA=1 where it exists)")


def default_archs(version: str) -> list[str]:
    out = subprocess.run(["cmake", f"-DNVCC_VERSION={version}", "-P", str(ROOT / "cmake" / "cuda_archs.cmake")],
                         capture_output=True, text=True, check=True)
    return out.stderr.strip().split(";")


@pytest.mark.parametrize("version,present,absent", [
    ("11.4", ["72", "87"], ["89", "100", "120"]),
    ("12.2", ["72", "87", "90"], ["100", "120"]),        # JetPack 6.0
    ("12.6", ["87", "90"], ["100", "120"]),              # JetPack 6.1/6.2
    ("12.8", ["87", "100", "120"], []),
    ("13.0", ["75", "87", "120"], ["72"]),
])
def test_default_architectures_follow_the_nvcc_version(version, present, absent):
    archs = default_archs(version)
    assert set(present) <= set(archs) and not set(absent) & set(archs), archs


def configure(build: Path, *defines: str) -> str:
    import pybind11

    proc = subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-DFER_EDGE_CUDA=ON", "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON",
                           f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", f"-DPython_EXECUTABLE={sys.executable}", *defines],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def compiled_archs(build: Path) -> set[str]:
    commands = json.loads((build / "compile_commands.json").read_text())
    return {a for c in commands if c["file"].endswith(".cu")
            for pair in re.findall(r"compute_(\d+)|sm_(\d+)", c["command"]) for a in pair if a}


@needs_nvcc
def test_a_restricted_architecture_list_compiles_only_those(tmp_path):
    out = configure(tmp_path / "b87", "-DFER_EDGE_CUDA_ARCHS=87")
    assert "CUDA archs 87 for nvcc" in out and "(FER_EDGE_CUDA_ARCHS)" in out
    assert compiled_archs(tmp_path / "b87") == {"87"}
    proc = subprocess.run(["cmake", "--build", str(tmp_path / "b87"), "--target", "csrc/hog/hog_cuda.cu.o"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]  # and nvcc really builds for it


@needs_nvcc
def test_the_default_build_names_its_architectures_and_why(tmp_path):
    out = configure(tmp_path / "auto")
    version = re.search(r"CUDA archs (\S+) for nvcc (\d+\.\d+)", out)
    assert version, out
    assert version.group(1).split(";") == default_archs(version.group(2)) and "87" in version.group(1)
    assert compiled_archs(tmp_path / "auto") == set(version.group(1).split(";"))


def test_the_environment_variable_reaches_cmake():
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'FER_EDGE_CUDA_ARCHS = \{ env = "FER_EDGE_CUDA_ARCHS"', text)

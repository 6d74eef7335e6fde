"""ONNX recognisers as model folders: ``marginlab import-model FILE.onnx --format onnx [--arch CONVENTION] --out DIR``.

The import checks the file (one self-contained file, the ONNX checker, an onnxruntime CPU session, one
real image input, one output) and writes ``DIR/onnx_model.json`` (:data:`~marginlab.released.embedder.ONNX_RECORD`):
the file's absolute path and sha256, its input and output names, input size, channel order, pixel
convention, embedding size and whether its output is already L2-normalised. The ONNX file stays where it
is; :func:`load_onnx_embedder` re-hashes it on every load, so a file changed or replaced after the import
is refused instead of silently measured.

**Pixel conventions.** An ONNX file does not say how it wants its pixels, so ``--arch`` names a row of
:data:`CONVENTIONS`; each is a channel order and an affine map of the raw 0..255 value. The wrapper
(:class:`OnnxBackbone`) takes the project's model input (``(v/255 − 0.5)/0.5`` in the model's channel
order, what :func:`marginlab.evaluate.embed.embed_images` feeds every backbone) and maps it onto the
convention, so evaluation's embedding (resize, flip fusion, the norm) runs unchanged on an ONNX model.
``marginlab`` is what ``marginlab export-onnx`` writes: read from the file's ``metadata_props``, so
our own exports need no ``--arch``.

**Graph inputs.** Old exporters list every weight as a graph input too, and some converters leave inputs
that no node reads (OpenCV Zoo's block-quantised SFace keeps the names of the weights it replaced;
onnxruntime then demands a value for each). Both kinds are pruned from the graph before the session is
built (in memory; the file and its sha256 are untouched). A model with more than one remaining input is
refused: it needs something besides an image.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from marginlab.core.io import write_json
from marginlab.released.embedder import ONNX_RECORD, Embedder
from marginlab.released.importers import register_importer

__all__ = [
    "CONVENTIONS",
    "METADATA_PREFIX",
    "ONNX_FORMAT",
    "ONNX_VERSION",
    "Convention",
    "OnnxBackbone",
    "import_onnx",
    "load_onnx_embedder",
]

log = logging.getLogger(__name__)

ONNX_FORMAT = "marginlab-onnx-record"
ONNX_VERSION = 1
#: Input size assumed when the image input's height and width are not static (the ArcFace crop).
DEFAULT_INPUT_SIZE = 112
#: ``metadata_props`` keys that ``marginlab export-onnx`` writes (``marginlab.channel_order``, ...).
METADATA_PREFIX = "marginlab."
#: The ``marginlab.format`` value and the normalisation that :mod:`marginlab.released.export_onnx` writes.
ONNX_EXPORT_TAG = "marginlab-onnx-export"
EXPORT_NORMALISATION = "(x/255-0.5)/0.5"
#: An output whose norms on every probe input lie within this of 1 is taken as already L2-normalised.
NORMALISED_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Convention:
    """How a model wants its pixels: ``channel_order`` and ``(v − mean) / std`` of the raw value ``v`` in 0..255."""

    name: str
    channel_order: str
    mean: float
    std: float
    summary: str

    @property
    def normalisation(self) -> str:
        return f"(x-{self.mean:g})/{self.std:g}"

    def affine(self) -> tuple[float, float]:
        """``(a, b)`` with ``model_input = a * s + b`` for the project's input ``s = v/127.5 − 1``."""
        return 127.5 / self.std, (127.5 - self.mean) / self.std


#: The conventions ``--arch`` names. SFace: OpenCV's ``FaceRecognizerSF::feature`` calls
#: ``dnn::blobFromImage(aligned, 1, Size(112, 112), Scalar(0, 0, 0), swapRB=true, crop=false)`` on an
#: OpenCV (BGR) image: RGB, raw 0..255 (the graph subtracts 127.5 and scales by 1/128 itself).
#: insightface: ``model_zoo/arcface_onnx.py`` feeds RGB ``(x − 127.5)/127.5``, except to a graph whose first
#: 8 nodes include a ``Sub``/``_minus`` and a ``Mul``/``_mul`` node (converted MXNet models normalise
#: themselves): those get raw RGB 0..255; ``--arch insightface`` applies that rule (and also looks for an
#: input → Sub → Mul chain, :func:`_normalises_itself`) and records ``insightface-raw`` then. AdaFace: its ``inference.py`` feeds BGR ``(x/255 − 0.5)/0.5``.
CONVENTIONS: dict[str, Convention] = {
    c.name: c
    for c in (
        Convention("sface", "RGB", 0.0, 1.0, "OpenCV Zoo SFace (FaceRecognizerSF): RGB, raw 0..255"),
        Convention("insightface", "RGB", 127.5, 127.5, "insightface ONNX recognisers: RGB, (x-127.5)/127.5"),
        Convention("insightface-raw", "RGB", 0.0, 1.0, "insightface, graph with its own Sub/Mul: RGB, raw 0..255"),
        Convention("adaface", "BGR", 127.5, 127.5, "AdaFace exports: BGR, (x/255-0.5)/0.5"),
        Convention("marginlab", "BGR", 127.5, 127.5, "marginlab export-onnx: read from the file's metadata"),
    )
}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _dims(value_info: Any) -> list[int | str | None]:
    """Static dims as ints, symbolic ones as their names, unknown ones as None."""
    dims: list[int | str | None] = []
    for d in value_info.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(str(d.dim_param))
        else:
            dims.append(None)
    return dims


def _metadata(model: Any) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


@dataclass
class _Graph:
    """A checked, pruned model: its serialised bytes and what feeding it needs."""

    model_bytes: bytes
    input_name: str
    input_dims: list[int | str | None]
    output_name: str
    output_dims: list[int | str | None]
    metadata: dict[str, str]
    pruned: list[str]
    normalises_itself: bool = False


def _prepare(data: bytes, source: str) -> _Graph:
    """Parse, prune and check the ONNX bytes of ``source`` (ValueError naming the file and what is wrong)."""
    import onnx

    try:
        model = onnx.load_model_from_string(data)
    except Exception as err:  # a protobuf DecodeError, or anything else the parser raises
        raise ValueError(f"{source}: not an ONNX model ({type(err).__name__}: {err})") from None
    graph = model.graph
    external = [t.name for t in graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise ValueError(
            f"{source}: weights stored in external data files ({', '.join(external[:3])}"
            f"{', ...' if len(external) > 3 else ''}); only a self-contained .onnx can be pinned by its sha256 "
            "(re-save it with onnx.save_model(..., save_as_external_data=False))"
        )
    initializers = {t.name for t in graph.initializer}
    consumed = _consumed(graph) | {o.name for o in graph.output}
    keep, pruned, listed = [], [], []
    for value in graph.input:
        if value.name in initializers:
            listed.append(value)  # a weight with a default value: never an input the caller must feed
        elif value.name in consumed:
            keep.append(value)
        else:
            pruned.append(value)
    if model.ir_version >= 4:  # before IR 4 every initializer must stay listed as an input
        pruned += listed
    if pruned:
        names = {v.name for v in pruned}
        kept = [v for v in graph.input if v.name not in names]
        del graph.input[:]
        graph.input.extend(kept)
    if len(keep) != 1:
        names = ", ".join(v.name for v in keep) or "none"
        raise ValueError(
            f"{source}: the model has {len(keep)} real inputs ({names}); an embedder takes exactly one image "
            "input (graph inputs that are initializers or unused were already set aside)"
        )
    image = keep[0]
    dims = _dims(image)
    elem = image.type.tensor_type.elem_type
    channels = dims[1] if len(dims) == 4 else None
    if elem != onnx.TensorProto.FLOAT or len(dims) != 4 or (isinstance(channels, int) and channels != 3):
        raise ValueError(
            f"{source}: input {image.name!r} is {onnx.TensorProto.DataType.Name(elem).lower()} {dims}; "
            "expected a 4-D float image batch (N, 3, H, W)"
        )
    if len(graph.output) != 1:
        names = ", ".join(o.name for o in graph.output)
        raise ValueError(f"{source}: the model has {len(graph.output)} outputs ({names}); an embedder has exactly one")
    try:
        onnx.checker.check_model(model)
    except Exception as err:  # onnx.checker.ValidationError
        raise ValueError(f"{source}: the ONNX checker refuses it ({' '.join(str(err).split())[:400]})") from None
    return _Graph(
        model_bytes=model.SerializeToString() if pruned else data,
        input_name=image.name,
        input_dims=dims,
        output_name=graph.output[0].name,
        output_dims=_dims(graph.output[0]),
        metadata=_metadata(model),
        pruned=[v.name for v in pruned],
        normalises_itself=_normalises_itself(graph, image.name),
    )


def _consumed(graph: Any) -> set[str]:
    """Every name a node reads, subgraphs (If/Loop/Scan bodies) included: they may read the outer graph's inputs."""
    import onnx

    names: set[str] = set()
    for node in graph.node:
        names.update(node.input)
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                names |= _consumed(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for sub in attribute.graphs:
                    names |= _consumed(sub)
    return names


def _normalises_itself(graph: Any, input_name: str) -> bool:
    """Whether the graph normalises its pixels itself: insightface's test (``ArcFaceONNX.__init__``: a Sub and a
    Mul node among the first 8, by name), or the image input going straight into a Sub whose output goes into a
    Mul. The second catches graphs where a converter put other nodes first (OpenCV Zoo's block-quantised SFace
    starts with its DequantizeLinear nodes), which insightface's own test misses."""
    names = [node.name for node in graph.node[:8]]
    if any(n.startswith(("Sub", "_minus")) for n in names) and any(n.startswith(("Mul", "_mul")) for n in names):
        return True
    subs = [n for n in graph.node if input_name in n.input and n.op_type == "Sub"]
    return any(m.op_type == "Mul" and set(m.input) & set(sub.output) for sub in subs for m in graph.node)


def _providers(device: Any) -> list[str]:
    """onnxruntime providers for ``device``: CPU, or CUDA first when asked for and present.

    GPU PATH: CUDAExecutionProvider exists only in the onnxruntime-gpu build; the pinned ``onnxruntime``
    wheel is CPU-only, so on this project's environment a cuda device still runs on the CPU provider."""
    import onnxruntime as ort

    kind = torch.device(device).type if device not in (None, "auto") else "cpu"
    if kind == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def make_session(model_bytes: bytes, source: str, device: Any = "cpu") -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: onnxruntime's notes on unused initializers are not ours to act on
    try:
        return ort.InferenceSession(model_bytes, sess_options=options, providers=_providers(device))
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph/... classes
        raise ValueError(f"{source}: onnxruntime cannot run it ({' '.join(str(err).split())[:400]})") from None


class OnnxBackbone(nn.Module):
    """An onnxruntime session as a backbone: the project's model input in, float32 features out.

    ``forward(x)``: ``x`` is ``(B, 3, S, S)`` in the model's channel order, ``(v/255 − 0.5)/0.5``; it is
    mapped to the convention (``a * x + b``), run in chunks of the model's static batch size when it has
    one (the last chunk padded), and returned as a float32 tensor on ``x``'s device. No parameters: the
    session lives outside torch, so ``.to()`` and ``.eval()`` change nothing and the features are the same
    on any device (``embed_images`` moves the input back where it came from)."""

    def __init__(self, session: Any, input_name: str, output_name: str, input_size: int, static_batch: int | None,
                 scale: float, shift: float, source: str):
        super().__init__()
        self.session = session
        self.input_name, self.output_name = input_name, output_name
        self.input_size, self.static_batch = input_size, static_batch
        self.scale, self.shift = float(scale), float(shift)
        self.source = source

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run([self.output_name], {self.input_name: batch})[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.input_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, s, s):
            raise ValueError(f"{self.source}: expects input (B, 3, {s}, {s}), got {tuple(x.shape)}")
        batch = x.detach().to("cpu", torch.float32).numpy()
        if self.scale != 1.0 or self.shift != 0.0:
            batch = batch * np.float32(self.scale) + np.float32(self.shift)
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        n = batch.shape[0]
        if self.static_batch is None or n == self.static_batch:
            out = self._run(batch)
        else:
            step, parts = self.static_batch, []
            for start in range(0, n, step):
                chunk = batch[start : start + step]
                short = step - chunk.shape[0]
                if short:
                    chunk = np.concatenate([chunk, np.zeros((short, *chunk.shape[1:]), dtype=np.float32)])
                parts.append(self._run(chunk)[: step - short])
            out = np.concatenate(parts)
        out = out.reshape(n, -1).astype(np.float32, copy=False)
        return torch.from_numpy(out).to(x.device)


def _backbone(graph: _Graph, session: Any, input_size: int, convention: Convention, source: str) -> OnnxBackbone:
    batch = graph.input_dims[0]
    a, b = convention.affine()
    return OnnxBackbone(session, graph.input_name, graph.output_name, input_size,
                        batch if isinstance(batch, int) and batch > 0 else None, a, b, source)


def probe_inputs(input_size: int) -> torch.Tensor:
    """Varied model inputs (noise, gradients, flat grey, a checkerboard, dark and bright) for the norm probe."""
    rng = np.random.default_rng(0)
    s = input_size
    ramp = np.linspace(-1, 1, s, dtype=np.float32)
    images = [
        rng.uniform(-1, 1, (3, s, s)),
        np.broadcast_to(ramp[None, None, :], (3, s, s)),
        np.broadcast_to(ramp[None, :, None], (3, s, s)) * np.array([1.0, -0.5, 0.2])[:, None, None],
        np.zeros((3, s, s)),
        np.where((np.indices((s, s)).sum(0) // max(1, s // 8)) % 2 == 0, 0.8, -0.8)[None].repeat(3, 0),
        np.full((3, s, s), -0.9) + rng.normal(0, 0.05, (3, s, s)),
        np.full((3, s, s), 0.9) - rng.normal(0, 0.05, (3, s, s)) ** 2,
    ]
    return torch.from_numpy(np.clip(np.stack(images), -1, 1).astype(np.float32))


def _convention(arch: str | None, graph: _Graph, source: str) -> tuple[Convention, int | None]:
    """The convention the import uses, and the input size the file's metadata states (if any)."""
    metadata = graph.metadata
    ours = metadata.get(f"{METADATA_PREFIX}format") == ONNX_EXPORT_TAG
    if arch is None and not ours:
        raise ValueError(
            f"{source}: an ONNX file does not say how it wants its pixels; name the convention with --arch "
            f"({', '.join(c for c in CONVENTIONS if c != 'marginlab')}; marginlab for files marginlab export-onnx wrote)"
        )
    name = arch or "marginlab"
    if name not in CONVENTIONS:
        raise ValueError(f"--arch {name!r} is not an ONNX input convention; allowed: {', '.join(CONVENTIONS)}")
    if name == "insightface" and graph.normalises_itself:
        log.info("%s: the graph starts with its own Sub/Mul: insightface feeds it raw RGB (insightface-raw)", source)
        return CONVENTIONS["insightface-raw"], None
    if name != "marginlab":
        return CONVENTIONS[name], None
    if not ours:
        raise ValueError(f"{source}: --arch marginlab, but the file has no {METADATA_PREFIX}format = "
                         f"{ONNX_EXPORT_TAG!r} metadata (it was not written by marginlab export-onnx)")
    order = metadata.get(f"{METADATA_PREFIX}channel_order")
    norm = metadata.get(f"{METADATA_PREFIX}normalisation")
    size = metadata.get(f"{METADATA_PREFIX}input_size", "")
    if order not in ("BGR", "RGB") or norm != EXPORT_NORMALISATION or not size.isdigit():
        raise ValueError(
            f"{source}: its marginlab metadata is incomplete or foreign (channel_order={order!r}, "
            f"normalisation={norm!r}, input_size={size!r}; expected BGR|RGB, {EXPORT_NORMALISATION!r}, an integer)"
        )
    return Convention("marginlab", order, 127.5, 127.5, CONVENTIONS["marginlab"].summary), int(size)


def _catalogue_entry(sha256: str) -> dict[str, Any]:
    """What the catalogue knows of a file with this sha256 (name, licence, training data), else nothing."""
    from marginlab.released.catalogue import CATALOGUE

    for entry in CATALOGUE.values():
        if entry.member_sha256 == sha256:
            return {"catalogue": entry.name, "licence": entry.licence, "trained_on": entry.trained_on,
                    "images_seen": entry.images_seen}
    return {}


@register_importer(
    "onnx",
    summary="an ONNX recogniser; --arch names its pixel convention (" + ", ".join(CONVENTIONS) + ")",
)
def import_onnx(src: Path, out: Path, arch: str | None) -> Path:
    """Check ``src`` and write ``out/onnx_model.json`` (module docstring); returns ``out``."""
    from marginlab.released.embedder import has_model

    src = Path(src).resolve()
    out = Path(out)
    if has_model(out):
        raise ValueError(f"{out}: already holds a model (model.pt or {ONNX_RECORD}); choose another --out")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    data = src.read_bytes()
    source = str(src)
    graph = _prepare(data, source)
    convention, stated_size = _convention(arch, graph, source)
    h, w = graph.input_dims[2], graph.input_dims[3]
    if isinstance(h, int) and isinstance(w, int):
        if h != w:
            raise ValueError(f"{source}: input {graph.input_name!r} is {h}x{w}; marginlab feeds square crops")
        if stated_size is not None and stated_size != h:
            raise ValueError(f"{source}: metadata says input_size {stated_size}, the graph's input is {h}x{w}")
        input_size = h
    else:
        input_size = stated_size or DEFAULT_INPUT_SIZE
        log.info("%s: input height/width not static; using %d", source, input_size)
    session = make_session(graph.model_bytes, source)
    module = _backbone(graph, session, input_size, convention, source)
    try:
        with torch.no_grad():
            feats = module(probe_inputs(input_size)).numpy()
    except ValueError:
        raise
    except Exception as err:  # onnxruntime's own errors (shape mismatch, ...)
        raise ValueError(f"{source}: running it on {input_size}x{input_size} images failed "
                         f"({' '.join(str(err).split())[:400]})") from None
    if not np.isfinite(feats).all():
        raise ValueError(f"{source}: produced NaN/inf features on the probe images")
    norms = np.linalg.norm(feats, axis=1)
    normalised = bool(np.all(np.abs(norms - 1.0) < NORMALISED_TOLERANCE))
    sha = _sha256(data)
    imported = {"format": "onnx", "source": source, "sha256": sha, "arch": convention.name, **_catalogue_entry(sha)}
    if convention.name == "marginlab":
        imported["exported_from"] = graph.metadata.get(f"{METADATA_PREFIX}source")
    record = {
        "format": ONNX_FORMAT,
        "version": ONNX_VERSION,
        "onnx_path": source,
        "sha256": sha,
        "input_name": graph.input_name,
        "output_name": graph.output_name,
        "pruned_inputs": len(graph.pruned),
        "input_size": int(input_size),
        "channel_order": convention.channel_order,
        "convention": convention.name,
        "normalisation": convention.normalisation,
        "embedding_size": int(feats.shape[1]),
        "normalised_output": normalised,
        "probe_norms": [round(float(n), 6) for n in norms],
        "imported": imported,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / ONNX_RECORD, record)
    if normalised:
        log.warning("%s: its output is already L2-normalised (norms %.4f-%.4f on the probe images): the norm "
                    "carries no quality information, and norm analyses refuse this model", source,
                    norms.min(), norms.max())
    return out


_RECORD_KEYS = {"onnx_path": str, "sha256": str, "input_name": str, "output_name": str, "input_size": int,
                "channel_order": str, "convention": str, "embedding_size": int, "normalised_output": bool}


def read_record(folder: str | Path) -> dict[str, Any]:
    """``folder/onnx_model.json``, checked (ModelFileError naming the file and the bad key)."""
    from marginlab.models import ModelFileError

    path = Path(folder) / ONNX_RECORD
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ModelFileError(f"{path}: cannot be read ({type(err).__name__}: {err})") from None
    if not isinstance(record, dict) or record.get("format") != ONNX_FORMAT:
        raise ModelFileError(f"{path}: not a marginlab ONNX record (format tag {ONNX_FORMAT!r} missing)")
    if record.get("version") != ONNX_VERSION:
        raise ModelFileError(f"{path}: version {record.get('version')!r}; this code reads {ONNX_VERSION}")
    for key, kind in _RECORD_KEYS.items():
        if not isinstance(record.get(key), kind) or (kind is int and isinstance(record.get(key), bool)):
            raise ModelFileError(f"{path}: {key} is {record.get(key)!r}, expected a {kind.__name__}")
    if record["channel_order"] not in ("BGR", "RGB"):
        raise ModelFileError(f"{path}: channel_order is {record['channel_order']!r}, expected BGR or RGB")
    return record


def load_onnx_embedder(folder: str | Path, device: Any = "cpu") -> Embedder:
    """The :class:`Embedder` of an imported ONNX model: re-hashes the file against the record first."""
    from marginlab.models import ModelFileError

    record = read_record(folder)
    path = Path(record["onnx_path"])
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ModelFileError(f"{path}: the ONNX file {Path(folder) / ONNX_RECORD} points to cannot be read "
                             f"({err.strerror or err}); import it again") from None
    if _sha256(data) != record["sha256"]:
        raise ModelFileError(f"{path}: sha256 {_sha256(data)[:16]}... differs from the {record['sha256'][:16]}... "
                             f"recorded at import ({Path(folder) / ONNX_RECORD}); the file changed: import it again")
    try:
        graph = _prepare(data, str(path))
        if (graph.input_name, graph.output_name) != (record["input_name"], record["output_name"]):
            raise ValueError(f"{path}: input/output names differ from the record")
        name = record["convention"]
        if name == "marginlab":
            convention = Convention("marginlab", record["channel_order"], 127.5, 127.5, CONVENTIONS[name].summary)
        elif name in CONVENTIONS:
            convention = CONVENTIONS[name]
        else:
            raise ValueError(f"{Path(folder) / ONNX_RECORD}: convention {name!r} unknown ({', '.join(CONVENTIONS)})")
        session = make_session(graph.model_bytes, str(path), device)
    except ValueError as err:
        raise ModelFileError(str(err)) from None
    module = _backbone(graph, session, record["input_size"], convention, str(path)).eval()
    if record["normalised_output"]:
        log.warning("%s: the model's output is L2-normalised; its feature norms are ~1 and carry no quality "
                    "information (norm analyses refuse it)", path)
    return Embedder(
        module=module,
        input_size=record["input_size"],
        channel_order=convention.channel_order,
        embedding_size=record["embedding_size"],
        normalised_output=record["normalised_output"],
        info={"imported": dict(record.get("imported") or {}), "onnx_path": str(path), "convention": name,
              "providers": list(session.get_providers()), "normalisation": convention.normalisation},
    )

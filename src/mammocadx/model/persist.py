"""Save and load a fitted head without pickle, with a model card and checksums.

A saved model is a folder of four files and nothing else::

    model/
      model.json        the model card: what the model is, how it was trained,
                        how well it did and what it is for (human-readable JSON)
      head.json         the scikit-learn pipeline: step names, classes, parameters,
                        scalar fitted attributes; arrays are referenced by name
      arrays.npz        every fitted array (uncompressed NumPy zip), read with
                        ``allow_pickle=False``: no object arrays, no code
      checksums.sha256  SHA-256 of the three files above, in ``sha256sum`` format
                        (``cd model && sha256sum -c checksums.sha256`` checks them)
      network.safetensors  fine-tuned models only: the network's weights (hashed too)

The card also records the hashes of ``head.json`` and ``arrays.npz`` (under
``files``), so a card printed in a paper or a report identifies the exact fitted
numbers. :func:`model_fingerprint` (SHA-256 of the card without its creation time,
which holds the other files' hashes) identifies the model in one string, the
same for two identical training runs; pass it to :func:`load_model` as
``expected_fingerprint`` to check a model against a published value.

Why not pickle/joblib: loading a pickle runs code chosen by whoever wrote the
file (scikit-learn's own documentation warns of it). Here loading only reads
JSON and numeric arrays, and rebuilds estimators from an allow-list of classes
(:data:`TRUSTED_ESTIMATORS`) by calling their constructor with JSON parameters
and setting their fitted attributes. Written by hand rather than with ``skops``
because the four estimator kinds are small, their fitted state is plain arrays,
and a hand-written format can be read without mammocadx or scikit-learn.

What loading refuses, with :class:`~mammocadx.errors.ModelIntegrityError`:
a file whose hash does not match, a missing file, **any file or folder not listed
above** (refused rather than ignored, so nothing unexpected travels with a model
unnoticed), symbolic links, object (pickled) arrays or extra members in
``arrays.npz``, estimator classes outside the allow-list, and a model that does
not reproduce the decision scores recorded at save time. A card written by a
newer, unknown schema raises :class:`~mammocadx.errors.ModelError` saying so.

The checksums detect corruption and accidental edits; they are not a signature.
Anyone who can write the folder can rewrite the checksums too; compare
:func:`model_fingerprint` with a value from a trusted source for that.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import logging
import math
import platform
import re
import warnings
import zipfile
from collections.abc import Mapping
from importlib import metadata
from inspect import getattr_static
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from mammocadx.errors import ModelError, ModelIntegrityError
from mammocadx.io.atomic import atomic_directory, json_data
from mammocadx.utils.hashing import sha256_file

log = logging.getLogger(__name__)

#: Version of the card and head layout. Readers refuse a higher number.
SCHEMA_VERSION = 1
FORMAT = "mammocadx-model"

CARD_FILE = "model.json"
HEAD_FILE = "head.json"
ARRAYS_FILE = "arrays.npz"
CHECKSUMS_FILE = "checksums.sha256"
#: Weights of a fine-tuned network (safetensors: a JSON header and raw little-endian tensors, no code),
#: present only in models whose card says ``kind: finetune``.
NETWORK_FILE = "network.safetensors"
MODEL_FILES = (CARD_FILE, HEAD_FILE, ARRAYS_FILE, CHECKSUMS_FILE)
HASHED_FILES = (CARD_FILE, HEAD_FILE, ARRAYS_FILE)
OPTIONAL_FILES = (NETWORK_FILE,)

#: The only classes a model may be rebuilt from (qualified name -> class).
TRUSTED_ESTIMATORS: dict[str, type] = {
    "sklearn.preprocessing.StandardScaler": StandardScaler,
    "sklearn.decomposition.PCA": PCA,
    "sklearn.svm.SVC": SVC,
    "sklearn.svm.LinearSVC": LinearSVC,
    "sklearn.linear_model.LogisticRegression": LogisticRegression,
}
_CLASS_NAMES = {cls: name for name, cls in TRUSTED_ESTIMATORS.items()}

#: Text used for the card's ``intended_use`` when the caller gives none.
DEFAULT_INTENDED_USE = (
    "Research and second reading only: a score for how malignant a marked breast lesion on a "
    "mammogram looks, with a Grad-CAM map of what drove it. Not a medical device; not for "
    "diagnosis, triage or treatment decisions; a radiologist reads every image."
)
#: Text used for the card's ``limitations`` when the caller gives none.
DEFAULT_LIMITATIONS = [
    "Trained on a small public dataset; performance on other scanners, populations and "
    "acquisition protocols is unknown until measured there.",
    "Classifies a lesion someone has already marked; it does not detect lesions.",
    "Scores are SVM/linear decision values, not calibrated probabilities.",
    "Film-screen datasets (mini-MIAS, CBIS-DDSM) differ from full-field digital mammography.",
]

#: Keys the caller must give in the card (dotted = inside a sub-dict), with their types.
REQUIRED_CARD_KEYS: dict[str, tuple[type, ...]] = {
    "backbone": (dict,),
    "backbone.name": (str,),
    "backbone.weights_sha256": (str, type(None)),
    "config": (dict,),
    "config.pseudocolor": (str,),
    "threshold": (int, float),
    "training_data": (dict,),
    "training_data.fingerprint": (str,),
    "training_data.n_lesions": (int,),
    "training_data.seed": (int, type(None)),
    "metrics": (dict, type(None)),
}

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ATTR_NAME = re.compile(r"^_?[A-Za-z][A-Za-z0-9_]*$")
_ALLOWED_DTYPE_KINDS = set("biufcUS")  # no "O" (objects = pickle) and no "V" (raw/structured)
_N_PROBE = 8


# ---------------------------------------------------------------------------
# hashing
# ---------------------------------------------------------------------------

def model_fingerprint(path: str | PathLike[str]) -> str:
    """One SHA-256 that identifies what a saved model is: its card (less the creation time), head and arrays.

    The card records the hashes of ``head.json`` and ``arrays.npz``, so this
    changes when any fitted number, parameter or card field changes, but not
    with ``created_utc``: two identical training runs give the same fingerprint.

    Raises
    ------
    ModelIntegrityError
        ``model.json`` is missing or not JSON.
    """
    path = Path(path)
    try:
        card = json.loads((path / CARD_FILE).read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelIntegrityError(f"cannot read {CARD_FILE} ({exc})", path) from exc
    if not isinstance(card, dict):
        raise ModelIntegrityError(f"{CARD_FILE} is not a JSON object", path)
    card.pop("created_utc", None)
    return hashlib.sha256(json.dumps(card, sort_keys=True, ensure_ascii=True).encode("ascii")).hexdigest()


# ---------------------------------------------------------------------------
# values <-> JSON + arrays
# ---------------------------------------------------------------------------

class _ArrayStore:
    """Collects arrays under unique keys while values are encoded to JSON."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def add(self, key: str, value: np.ndarray) -> dict[str, str]:
        if value.dtype.kind not in _ALLOWED_DTYPE_KINDS:
            raise ModelError(f"cannot save {key}: arrays of dtype {value.dtype} are not supported (no objects)")
        self.arrays[key] = value
        return {"__array__": key}


def _encode(value: Any, key: str, store: _ArrayStore) -> Any:
    """Encode one parameter or fitted attribute as JSON, moving arrays and NumPy scalars to ``store``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.ndarray):
        return store.add(key, value)
    if isinstance(value, np.generic):  # NumPy scalar: keep its exact dtype as a 0-d array
        return store.add(key, np.asarray(value))
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        # JSON numbers round-trip Python floats exactly (shortest repr); NaN/inf are not JSON.
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, f"{key}.{i}", store) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{key}.{i}", store) for i, v in enumerate(value)]
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise ModelError(f"cannot save {key}: dict key {k!r} is not a string or integer")
            items.append([k, _encode(v, f"{key}.{k}", store)])
        return {"__dict__": items}
    raise ModelError(f"cannot save {key}: values of type {type(value).__name__} are not supported")


def _decode(value: Any, arrays: Mapping[str, np.ndarray], used: set[str], where: str) -> Any:
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if isinstance(value, list):
        return [_decode(v, arrays, used, where) for v in value]
    if isinstance(value, dict) and len(value) == 1:
        (tag, inner), = value.items()
        if tag == "__array__" and isinstance(inner, str):
            if inner not in arrays:
                raise ModelIntegrityError(f"{where}: array {inner!r} is missing from {ARRAYS_FILE}")
            used.add(inner)
            arr = arrays[inner]
            return arr[()] if arr.ndim == 0 else arr
        if tag == "__float__" and inner in ("nan", "inf", "-inf"):
            return float(inner)
        if tag == "__tuple__" and isinstance(inner, list):
            return tuple(_decode(v, arrays, used, where) for v in inner)
        if tag == "__dict__" and isinstance(inner, list):
            out = {}
            for pair in inner:
                if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], (str, int))):
                    raise ModelIntegrityError(f"{where}: malformed dict entry {pair!r} in {HEAD_FILE}")
                out[pair[0]] = _decode(pair[1], arrays, used, where)
            return out
    raise ModelIntegrityError(f"{where}: unexpected value {str(value)[:80]!r} in {HEAD_FILE}")


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An ``.npz`` with fixed member timestamps, so equal arrays give equal bytes (and hashes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asarray(arrays[key]), allow_pickle=False)
    return buf.getvalue()


# ---------------------------------------------------------------------------
# estimators <-> head description
# ---------------------------------------------------------------------------

def _describe_estimator(name: str, est: Any, store: _ArrayStore) -> dict[str, Any]:
    cls_name = _CLASS_NAMES.get(type(est))
    if cls_name is None:
        raise ModelError(
            f"step {name!r} is a {type(est).__module__}.{type(est).__name__}, which this format cannot save; "
            f"supported: {', '.join(sorted(TRUSTED_ESTIMATORS))}"
        )
    params = est.get_params(deep=False)
    fitted = {k: v for k, v in vars(est).items() if k not in params}
    if not any(k.endswith("_") and not k.startswith("__") for k in fitted):
        raise ModelError(f"step {name!r} ({cls_name}) is not fitted")
    return {
        "name": name,
        "class": cls_name,
        "params": {k: _encode(v, f"{name}/param/{k}", store) for k, v in sorted(params.items())},
        "fitted": {k: _encode(v, f"{name}/{k}", store) for k, v in sorted(fitted.items())},
    }


def _rebuild_estimator(desc: Any, arrays: Mapping[str, np.ndarray], used: set[str]) -> tuple[str, Any]:
    if not isinstance(desc, dict) or set(desc) != {"name", "class", "params", "fitted"}:
        raise ModelIntegrityError(f"malformed step description in {HEAD_FILE}")
    name, cls_name = desc["name"], desc["class"]
    if not isinstance(name, str) or not _ATTR_NAME.match(name) or "__" in name:
        raise ModelIntegrityError(f"bad step name {str(name)[:40]!r} in {HEAD_FILE}")
    cls = TRUSTED_ESTIMATORS.get(cls_name) if isinstance(cls_name, str) else None
    if cls is None:
        raise ModelIntegrityError(f"step {name!r}: class {str(cls_name)[:80]!r} is not in the trusted list")
    if not isinstance(desc["params"], dict) or not isinstance(desc["fitted"], dict):
        raise ModelIntegrityError(f"step {name!r}: malformed params/fitted in {HEAD_FILE}")
    where = f"step {name!r}"
    params = {k: _decode(v, arrays, used, where) for k, v in desc["params"].items()}
    valid = set(cls().get_params(deep=False))
    unknown = set(params) - valid
    if unknown:
        raise ModelIntegrityError(f"{where}: {cls_name} has no parameter(s) {sorted(unknown)}")
    try:
        est = cls(**params)
    except (TypeError, ValueError) as exc:
        raise ModelIntegrityError(f"{where}: cannot construct {cls_name} ({exc})") from exc
    for attr, raw in desc["fitted"].items():
        _check_attr_name(cls, cls_name, attr, valid, where)
        setattr(est, attr, _decode(raw, arrays, used, where))
    return name, est


def _check_attr_name(cls: type, cls_name: str, attr: Any, params: set[str], where: str) -> None:
    """Only plain data attributes: never a dunder, a parameter, or a member the class defines
    itself (a method or property that an instance attribute could shadow)."""
    if not isinstance(attr, str) or not _ATTR_NAME.match(attr) or attr.startswith("__") or attr in params:
        raise ModelIntegrityError(f"{where}: refusing attribute name {str(attr)[:40]!r}")
    try:
        getattr_static(cls, attr)
    except AttributeError:
        return
    raise ModelIntegrityError(f"{where}: attribute {attr!r} would shadow a member of {cls_name}")


def _probe_inputs(head: Pipeline) -> np.ndarray:
    """Deterministic inputs around the training distribution (for the load-time self-check)."""
    n = int(getattr(head, "n_features_in_", 0) or 0)
    first = head.steps[0][1]
    mean = np.asarray(getattr(first, "mean_", np.zeros(n)), dtype=np.float64)
    scale = getattr(first, "scale_", None)
    scale = np.ones(n) if scale is None else np.asarray(scale, dtype=np.float64)
    rng = np.random.default_rng(20210605)
    return (mean + rng.standard_normal((_N_PROBE, n)) * scale).astype(np.float64)


# ---------------------------------------------------------------------------
# model card
# ---------------------------------------------------------------------------

def _lookup(card: Mapping[str, Any], dotted: str) -> Any:
    node: Any = card
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def validate_card(card: Mapping[str, Any]) -> None:
    """Check that a model card has every required key with the right type.

    Required (dotted = inside a sub-dict):

    - ``backbone.name``, ``backbone.weights_sha256`` (str, or null for random weights);
    - ``config`` (the model's full configuration: preprocessing, ROI, pseudocolour,
      head settings) with at least ``config.pseudocolor``;
    - ``threshold``: the decision threshold on the score (finite number);
    - ``training_data.fingerprint`` (see
      :func:`mammocadx.utils.determinism.fingerprint_records`),
      ``training_data.n_lesions`` and ``training_data.seed`` (int or null);
    - ``metrics``: a dict or null; when not empty it must say its ``protocol``
      (e.g. "5-fold patient-grouped CV, 5 repeats").

    Raises
    ------
    ModelError
        Naming the first missing or mistyped key.
    """
    for key, types in REQUIRED_CARD_KEYS.items():
        try:
            value = _lookup(card, key)
        except KeyError:
            raise ModelError(f"model card lacks required key {key!r}") from None
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ModelError(f"model card key {key!r} must be {names}, got {type(value).__name__}")
    if card["metrics"] and "protocol" not in card["metrics"]:
        raise ModelError("model card 'metrics' must say its 'protocol' (how the numbers were measured)")
    if not math.isfinite(float(card["threshold"])):
        raise ModelError("model card 'threshold' must be a finite number")


def _jsonable(value: Any, where: str) -> Any:
    """Card values as strict JSON (:func:`mammocadx.io.atomic.json_data`); other types are a ModelError."""
    try:
        return json_data(value)
    except TypeError as exc:
        raise ModelError(f"model card {where}: {exc}") from None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def software_versions() -> dict[str, str | None]:
    """Versions of Python and the libraries a model's numbers depend on (no heavy imports)."""
    from mammocadx import __version__

    out: dict[str, str | None] = {"mammocadx": __version__, "python": platform.python_version()}
    for dist in ("numpy", "scikit-learn", "scipy", "torch", "timm", "pillow", "pydicom"):
        out[dist] = _version(dist)
    return out


def _head_summary(head: Pipeline) -> dict[str, Any]:
    last = head.steps[-1][1]
    summary: dict[str, Any] = {
        "steps": [[n, _CLASS_NAMES[type(e)]] for n, e in head.steps],
        "n_features_in": int(head.n_features_in_),
        "score": "decision_function",
        "classes": np.asarray(last.classes_).tolist(),
    }
    for _, est in head.steps:
        if isinstance(est, PCA):
            summary["n_components"] = int(est.n_components_)
            summary["explained_variance"] = float(np.sum(est.explained_variance_ratio_))
        if isinstance(est, SVC):
            summary.update(kernel=est.kernel, C=float(est.C), gamma=float(est._gamma),
                           gamma_param=est.gamma if isinstance(est.gamma, str) else float(est.gamma),
                           n_support_vectors=int(est.support_vectors_.shape[0]))
        if isinstance(est, (LinearSVC, LogisticRegression)):
            summary.update(C=float(est.C))
    return summary


# ---------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------

def is_model_folder(path: str | PathLike[str]) -> bool:
    """Whether ``path`` is a folder holding a saved model's files and nothing else (contents not checked)."""
    path = Path(path)
    if not path.is_dir() or path.is_symlink():
        return False
    entries = {p.name for p in path.iterdir()}
    return CHECKSUMS_FILE in entries and CARD_FILE in entries and entries <= set(MODEL_FILES) | set(OPTIONAL_FILES)


def save_model(path: str | PathLike[str], head: Pipeline, card: Mapping[str, Any], *,
               overwrite: bool = True, network: Mapping[str, np.ndarray] | None = None) -> Path:
    """Write a fitted head and its model card to a folder, atomically, without pickle.

    Parameters
    ----------
    path : str or PathLike
        The model folder to create. An existing *model* folder (or an empty
        folder) is replaced atomically when ``overwrite``; any other existing
        path is refused, so a slip like ``save_model(".", ...)`` cannot delete a
        folder of other files.
    head : sklearn.pipeline.Pipeline
        Fitted pipeline whose steps are all in :data:`TRUSTED_ESTIMATORS`
        (StandardScaler, PCA, SVC, LinearSVC, LogisticRegression), the last one
        with ``decision_function``.
    card : mapping
        The model card; see :func:`validate_card` for the required keys. Any
        other JSON-able keys are kept (``name``, ``dataset``, ``mode``, ...).
        Filled in here: ``format``, ``schema_version``, ``created_utc`` (unless
        given), ``software`` (library versions), ``head`` (steps, PCA
        components, C, effective gamma, classes; merged over any ``head`` dict
        given), ``files`` (SHA-256 of head.json and arrays.npz),
        ``intended_use`` and ``limitations`` (defaults if not given). NaN and
        infinite metric values are written as ``null`` (JSON has no NaN).
    overwrite : bool, default True
        Replace an existing model folder.
    network : mapping of str to ndarray, optional
        Weights of a fine-tuned network (written as ``network.safetensors``, hashed
        like the other files; read back with :func:`load_network`).

    Returns
    -------
    Path
        The model folder.

    Raises
    ------
    ModelError
        Unsupported or unfitted step, invalid card, or a path that is not safe to replace.
    """
    path = Path(path)
    if not isinstance(head, Pipeline):
        raise ModelError(f"expected a fitted sklearn Pipeline, got {type(head).__name__}", path)
    if not hasattr(head.steps[-1][1], "decision_function"):
        raise ModelError("the last step of the head must have decision_function", path)
    validate_card(card)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise ModelError("already exists (pass overwrite=True to replace it)", path)
        if not path.is_dir() or path.is_symlink():
            raise ModelError("exists and is not a model folder; refusing to replace it", path)
        if any(path.iterdir()) and not is_model_folder(path):
            raise ModelError("exists and holds files that are not a mammocadx model; refusing to replace it", path)

    store = _ArrayStore()
    steps = [_describe_estimator(name, est, store) for name, est in head.steps]
    # Attributes set on the Pipeline itself after fitting (e.g. a mode's chosen ``threshold_``).
    pipe_params = head.get_params(deep=False)
    pipe_fitted = {k: _encode(v, f"pipeline/{k}", store) for k, v in sorted(vars(head).items())
                   if k not in pipe_params}
    probe = _probe_inputs(head)
    store.add("probe/X", probe)
    store.add("probe/decision", np.asarray(head.decision_function(probe), dtype=np.float64))
    head_doc = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "kind": "sklearn.pipeline.Pipeline",
        "sklearn_version": _version("scikit-learn"),
        "steps": steps,
        "pipeline_fitted": pipe_fitted,
        "probe": {"X": "probe/X", "decision": "probe/decision"},
    }
    head_bytes = (json.dumps(head_doc, indent=1, allow_nan=False) + "\n").encode("utf-8")
    npz_bytes = _npz_bytes(store.arrays)

    given = _jsonable(dict(card), "card")
    full: dict[str, Any] = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "created_utc": given.pop("created_utc", None)
        or _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }
    full.update({k: v for k, v in given.items() if k not in ("format", "schema_version", "software", "files")})
    full["head"] = {**(given.get("head") or {}), **_head_summary(head)}
    full.setdefault("intended_use", DEFAULT_INTENDED_USE)
    full.setdefault("limitations", list(DEFAULT_LIMITATIONS))
    full["software"] = software_versions()
    full["files"] = {HEAD_FILE: hashlib.sha256(head_bytes).hexdigest(),
                     ARRAYS_FILE: hashlib.sha256(npz_bytes).hexdigest()}
    contents = {HEAD_FILE: head_bytes, ARRAYS_FILE: npz_bytes}
    if network is not None:
        from safetensors.numpy import save as safetensors_bytes

        contents[NETWORK_FILE] = safetensors_bytes({k: np.ascontiguousarray(v) for k, v in network.items()})
        full["files"][NETWORK_FILE] = hashlib.sha256(contents[NETWORK_FILE]).hexdigest()
    card_bytes = (json.dumps(full, indent=2, allow_nan=False, ensure_ascii=False) + "\n").encode("utf-8")
    contents[CARD_FILE] = card_bytes
    names = [*HASHED_FILES, *(n for n in OPTIONAL_FILES if n in contents)]
    checksums = "".join(f"{hashlib.sha256(contents[n]).hexdigest()}  {n}\n" for n in names)
    with atomic_directory(path) as tmp:
        for name in names:
            (tmp / name).write_bytes(contents[name])
        # Written last: a folder without it is never trusted by load_model.
        (tmp / CHECKSUMS_FILE).write_text(checksums, encoding="ascii")
    log.info("saved model to %s (fingerprint %s)", path, model_fingerprint(path)[:12])
    return path


def _read_checksums(path: Path) -> dict[str, str]:
    try:
        text = (path / CHECKSUMS_FILE).read_bytes().decode("ascii")
    except UnicodeDecodeError:
        raise ModelIntegrityError(f"{CHECKSUMS_FILE} is not ASCII text (corrupt)", path) from None
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = re.fullmatch(r"([0-9a-f]{64}) [ *](\S+)", line)
        if not m or m.group(2) not in HASHED_FILES + OPTIONAL_FILES or m.group(2) in out:
            raise ModelIntegrityError(f"{CHECKSUMS_FILE}: malformed line {line[:90]!r}", path)
        out[m.group(2)] = m.group(1)
    if not set(HASHED_FILES) <= set(out):
        raise ModelIntegrityError(f"{CHECKSUMS_FILE} does not list {sorted(set(HASHED_FILES) - set(out))}", path)
    return out


def _strict_json(data: bytes, name: str, path: Path) -> Any:
    def no_constants(c: str) -> Any:
        raise ValueError(f"{c} is not JSON")

    try:
        return json.loads(data.decode("utf-8"), parse_constant=no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelIntegrityError(f"{name} is not valid JSON ({exc})", path) from None


def _check_npz_headers(path: Path) -> None:
    """Read every member's .npy header before any array: refuse objects and sizes the bytes cannot back.

    A resealed archive could otherwise announce a 10**12-element array and make
    ``np.load`` try to allocate it.
    """
    file = path / ARRAYS_FILE
    with zipfile.ZipFile(file) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                raise ModelIntegrityError(f"{ARRAYS_FILE} holds members that are not arrays: {info.filename[:60]!r}",
                                          path)
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, _fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                elif version == (2, 0):
                    shape, _fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                else:
                    raise ModelIntegrityError(f"{ARRAYS_FILE}: unsupported .npy version {version}", path)
            if dtype.hasobject or dtype.kind not in _ALLOWED_DTYPE_KINDS:
                raise ModelIntegrityError(f"{ARRAYS_FILE}: {info.filename[:60]!r} holds pickled/object data "
                                          f"(dtype {dtype}); refused", path)
            nbytes = math.prod(int(n) for n in shape) * dtype.itemsize
            if nbytes > info.file_size:
                raise ModelIntegrityError(f"{ARRAYS_FILE}: {info.filename[:60]!r} announces {nbytes} bytes but "
                                          f"holds {info.file_size}", path)


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    file = path / ARRAYS_FILE
    try:
        _check_npz_headers(path)
        with np.load(file, allow_pickle=False) as npz:
            names = list(npz.files)
            bad = [n for n in npz.zip.namelist() if not n.endswith(".npy")]
            if bad:
                raise ModelIntegrityError(f"{ARRAYS_FILE} holds members that are not arrays: {bad[:5]}", path)
            arrays = {n: npz[n] for n in names}
    except ModelIntegrityError:
        raise
    except ValueError as exc:
        # NumPy refuses object arrays with allow_pickle=False: "Object arrays cannot be loaded ..."
        raise ModelIntegrityError(f"{ARRAYS_FILE} holds pickled/object data or is malformed ({exc}); refused",
                                  path) from None
    except (OSError, zipfile.BadZipFile, EOFError, MemoryError, zipfile.LargeZipFile) as exc:
        raise ModelIntegrityError(f"{ARRAYS_FILE} is not a readable NumPy archive "
                                  f"({type(exc).__name__}: {exc})", path) from None
    for key, arr in arrays.items():
        if arr.dtype.kind not in _ALLOWED_DTYPE_KINDS:
            raise ModelIntegrityError(f"{ARRAYS_FILE}: array {key!r} has refused dtype {arr.dtype}", path)
    return arrays


def load_model(path: str | PathLike[str], *, expected_fingerprint: str | None = None) -> tuple[Pipeline, dict]:
    """Load a model folder written by :func:`save_model`, checking it thoroughly first.

    Parameters
    ----------
    path : str or PathLike
        The model folder.
    expected_fingerprint : str, optional
        A :func:`model_fingerprint` from a trusted source; the folder must match it.

    Returns
    -------
    head : sklearn.pipeline.Pipeline
        The fitted pipeline; ``head.decision_function`` gives bit-identical scores
        to the saved one on the same library versions.
    card : dict
        The model card as saved.

    Raises
    ------
    ModelError
        Not a folder, or a card from a newer schema (upgrade mammocadx).
    ModelIntegrityError
        Missing, unknown, tampered or pickled files; untrusted classes; a
        model that does not reproduce its recorded probe scores.
    """
    path = Path(path)
    if not path.is_dir():
        raise ModelError("not found or not a folder (a model is a folder written by 'mammocadx train --model-out DIR')", path)
    present = {p.name: p for p in path.iterdir()}
    unknown = sorted(set(present) - set(MODEL_FILES) - set(OPTIONAL_FILES))
    if unknown:
        raise ModelIntegrityError(
            f"unexpected entries {unknown[:5]} in the model folder; a model holds only "
            f"{', '.join(MODEL_FILES)} (remove the others if you trust them)", path)
    missing = [n for n in MODEL_FILES if n not in present]
    if missing:
        raise ModelIntegrityError(f"incomplete model folder: missing {missing}", path)
    for name, p in present.items():
        if p.is_symlink() or not p.is_file():
            raise ModelIntegrityError(f"{name} is a symbolic link or not a regular file; refused", path)

    if expected_fingerprint is not None and model_fingerprint(path) != expected_fingerprint.strip().lower():
        raise ModelIntegrityError("model fingerprint differs from the expected one", path)
    sums = _read_checksums(path)
    blobs: dict[str, bytes] = {}
    optional = [n for n in OPTIONAL_FILES if n in present or n in sums]
    for name in optional:
        if name not in present or name not in sums:
            raise ModelIntegrityError(f"{name} is {'not listed in ' + CHECKSUMS_FILE if name in present else 'missing'}",
                                      path)
        if present[name].is_symlink() or not present[name].is_file():
            raise ModelIntegrityError(f"{name} is a symbolic link or not a regular file; refused", path)
        if sha256_file(present[name]) != sums[name]:
            raise ModelIntegrityError(f"{name} does not match its SHA-256 in {CHECKSUMS_FILE} (corrupt or modified)",
                                      path)
    for name in HASHED_FILES:
        data = (path / name).read_bytes()
        if hashlib.sha256(data).hexdigest() != sums[name]:
            raise ModelIntegrityError(f"{name} does not match its SHA-256 in {CHECKSUMS_FILE} "
                                      "(corrupt or modified)", path)
        blobs[name] = data

    card = _strict_json(blobs[CARD_FILE], CARD_FILE, path)
    head_doc = _strict_json(blobs[HEAD_FILE], HEAD_FILE, path)
    for name, doc in ((CARD_FILE, card), (HEAD_FILE, head_doc)):
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ModelIntegrityError(f"{name} is not a {FORMAT} file", path)
        version = doc.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ModelIntegrityError(f"{name} has an invalid schema_version {version!r}", path)
        if version > SCHEMA_VERSION:
            saved_by = (card.get("software") or {}).get("mammocadx") if isinstance(card, dict) else None
            raise ModelError(
                f"{name} uses model schema {version}, newer than this mammocadx understands ({SCHEMA_VERSION}); "
                f"the model was saved by mammocadx {saved_by or 'a newer version'}: upgrade mammocadx to load it",
                path)
    try:
        validate_card(card)
    except ModelError as exc:
        raise ModelIntegrityError(f"{CARD_FILE}: {exc.reason}", path) from None
    files = card.get("files")
    if not isinstance(files, dict) or any(files.get(n) != sums[n] for n in (HEAD_FILE, ARRAYS_FILE, *optional)) \
            or any(n in files and n not in optional for n in OPTIONAL_FILES):
        raise ModelIntegrityError(f"the hashes in {CARD_FILE} 'files' do not match {CHECKSUMS_FILE}", path)

    arrays = _load_arrays(path)
    steps_doc = head_doc.get("steps")
    if not isinstance(steps_doc, list) or not steps_doc:
        raise ModelIntegrityError(f"{HEAD_FILE} lists no steps", path)
    used: set[str] = set()
    try:
        steps = [_rebuild_estimator(d, arrays, used) for d in steps_doc]
    except ModelIntegrityError as exc:
        raise ModelIntegrityError(exc.reason, path) from None
    except RecursionError:
        raise ModelIntegrityError(f"{HEAD_FILE} is nested too deeply", path) from None
    if len({n for n, _ in steps}) != len(steps):
        raise ModelIntegrityError(f"{HEAD_FILE} repeats a step name", path)
    head = Pipeline(steps)
    pipe_fitted = head_doc.get("pipeline_fitted", {})
    if not isinstance(pipe_fitted, dict):
        raise ModelIntegrityError(f"{HEAD_FILE}: malformed pipeline_fitted", path)
    try:
        for attr, raw in pipe_fitted.items():
            _check_attr_name(Pipeline, "sklearn.pipeline.Pipeline", attr, set(head.get_params(deep=False)),
                             "pipeline")
            setattr(head, attr, _decode(raw, arrays, used, "pipeline"))
    except ModelIntegrityError as exc:
        raise ModelIntegrityError(exc.reason, path) from None

    probe = head_doc.get("probe")
    if not (isinstance(probe, dict) and probe.get("X") in arrays and probe.get("decision") in arrays):
        raise ModelIntegrityError(f"{HEAD_FILE} lacks its probe scores", path)
    used |= {probe["X"], probe["decision"]}
    extra = sorted(set(arrays) - used)
    if extra:
        raise ModelIntegrityError(f"{ARRAYS_FILE} holds arrays no step uses: {extra[:5]}", path)
    _self_check(head, arrays[probe["X"]], arrays[probe["decision"]], head_doc.get("sklearn_version"), path)
    log.debug("loaded model %s", path)
    return head, card


def load_network(path: str | PathLike[str]) -> dict[str, np.ndarray]:
    """The fine-tuned network's weights of a model folder, checked against ``checksums.sha256`` and the card.

    Call after :func:`load_model` accepted the folder. safetensors holds a JSON
    header and raw tensors, so reading it runs no code.

    Raises
    ------
    ModelIntegrityError
        The file is missing, differs from its recorded hash, or is not a valid safetensors file.
    """
    path = Path(path)
    sums = _read_checksums(path)
    file = path / NETWORK_FILE
    if NETWORK_FILE not in sums or file.is_symlink() or not file.is_file():
        raise ModelIntegrityError(f"the model has no {NETWORK_FILE} (a fine-tuned model needs its network)", path)
    data = file.read_bytes()
    if hashlib.sha256(data).hexdigest() != sums[NETWORK_FILE]:
        raise ModelIntegrityError(f"{NETWORK_FILE} does not match its SHA-256 in {CHECKSUMS_FILE} "
                                  "(corrupt or modified)", path)
    from safetensors import SafetensorError
    from safetensors.numpy import load as safetensors_load

    try:
        return dict(safetensors_load(data))
    except (SafetensorError, ValueError) as exc:
        raise ModelIntegrityError(f"{NETWORK_FILE} is not a valid safetensors file ({exc})", path) from None


def _self_check(head: Pipeline, X: np.ndarray, expected: np.ndarray, saved_sklearn: Any, path: Path) -> None:
    """The rebuilt head must reproduce the scores recorded at save time."""
    running = _version("scikit-learn")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = np.asarray(head.decision_function(X), dtype=np.float64)
    except Exception as exc:  # any failure here means the rebuilt estimator is unusable
        raise ModelIntegrityError(
            f"the rebuilt model cannot score ({type(exc).__name__}: {exc}); saved with scikit-learn "
            f"{saved_sklearn}, running {running}", path) from exc
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-7, atol=1e-9):
        diff = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else float("nan")
        raise ModelIntegrityError(
            f"the rebuilt model does not reproduce its recorded scores (max difference {diff:.3g}); saved "
            f"with scikit-learn {saved_sklearn}, running {running}", path)
    if saved_sklearn != running:
        log.warning("%s: saved with scikit-learn %s, running %s (scores checked and match)",
                    path, saved_sklearn, running)

"""Pickle-free model files: bit-exact round trips and refusal of anything tampered."""
from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from mammocadx.errors import ModelError, ModelIntegrityError
from mammocadx.model import persist
from mammocadx.model.persist import (
    ARRAYS_FILE,
    CARD_FILE,
    CHECKSUMS_FILE,
    HEAD_FILE,
    SCHEMA_VERSION,
    load_model,
    model_fingerprint,
    save_model,
    validate_card,
)


def _data(n=90, d=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.1, 5, size=d) + rng.normal(size=d)
    y = (X[:, 0] / 3 + X[:, 1] + rng.normal(size=n) > 0).astype(int)
    return X, y, rng.normal(size=(200, d)) * 3


def _card(**over):
    card = {
        "name": "test-model",
        "backbone": {"name": "tf_efficientnet_lite0", "weights_sha256": "ab" * 32, "feature_dim": 40},
        "config": {"mode": "paper", "pseudocolor": "sine", "context": 1.5, "segment": False},
        "threshold": 0.0,
        "training_data": {"fingerprint": "cd" * 32, "n_lesions": 90, "seed": 0, "dataset": "synthetic"},
        "metrics": {"protocol": "5-fold patient-grouped CV", "auc": 0.71, "auc_ci": [0.6, 0.8]},
        "created_utc": "2026-01-01T00:00:00+00:00",
    }
    card.update(over)
    return card


HEADS = {
    "paper_rbf_svc_pca": lambda: Pipeline([("scaler", StandardScaler()), ("pca", PCA(12, svd_solver="full")),
                                           ("svc", SVC(kernel="rbf", C=1.0, gamma="auto"))]),
    "rbf_svc_no_pca": lambda: Pipeline([("scaler", StandardScaler()), ("svc", SVC(gamma="scale", C=3.0))]),
    "rbf_svc_float_gamma": lambda: Pipeline([("scaler", StandardScaler()), ("pca", PCA(0.9, svd_solver="full")),
                                             ("svc", SVC(gamma=0.0123, class_weight="balanced"))]),
    "linear_kernel_svc_pca": lambda: Pipeline([("scaler", StandardScaler()), ("pca", PCA(8)),
                                               ("svc", SVC(kernel="linear"))]),
    "linear_svc": lambda: Pipeline([("scaler", StandardScaler()), ("svc", LinearSVC(C=0.1))]),
    "logreg_pca": lambda: Pipeline([("scaler", StandardScaler()), ("pca", PCA(10, whiten=True)),
                                    ("lr", LogisticRegression(C=0.5, max_iter=500, class_weight={0: 1.0, 1: 2.0}))]),
    "logreg_no_pca": lambda: Pipeline([("scaler", StandardScaler()), ("lr", LogisticRegression())]),
}


@pytest.fixture(scope="module")
def fitted():
    X, y, X_new = _data()
    return {k: make().fit(X, y) for k, make in HEADS.items()}, X, X_new


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_round_trip_reproduces_decision_function_bit_for_bit(kind, fitted, tmp_path):
    heads, X, X_new = fitted
    head = heads[kind]
    out = save_model(tmp_path / "model", head, _card())
    loaded, card = load_model(out)
    for data in (X, X_new):
        assert np.array_equal(loaded.decision_function(data), head.decision_function(data))
        assert np.array_equal(loaded.predict(data), head.predict(data))
    assert [n for n, _ in loaded.steps] == [n for n, _ in head.steps]
    assert [type(e) for _, e in loaded.steps] == [type(e) for _, e in head.steps]
    assert card["schema_version"] == SCHEMA_VERSION and card["format"] == "mammocadx-model"


def test_no_pickle_anywhere(fitted, tmp_path):
    out = save_model(tmp_path / "m", fitted[0]["paper_rbf_svc_pca"], _card())
    assert sorted(p.name for p in out.iterdir()) == sorted([ARRAYS_FILE, CARD_FILE, CHECKSUMS_FILE, HEAD_FILE])
    with np.load(out / ARRAYS_FILE, allow_pickle=False) as npz:  # would raise on any object array
        assert all(npz[k].dtype.kind != "O" for k in npz.files)
        assert {"svc/support_vectors_", "svc/_dual_coef_", "pca/components_", "scaler/mean_"} <= set(npz.files)
    for name in (CARD_FILE, HEAD_FILE, ARRAYS_FILE):
        assert b"\x80\x04\x95" not in (out / name).read_bytes()  # pickle protocol-4 header


def test_card_records_what_a_reader_needs(fitted, tmp_path):
    head = fitted[0]["paper_rbf_svc_pca"]
    out = save_model(tmp_path / "m", head, _card(metrics={"protocol": "cv", "auc": float("nan"), "n": np.int64(3)}))
    card = json.loads((out / CARD_FILE).read_text())
    assert card["head"]["n_components"] == 12
    assert card["head"]["gamma"] == pytest.approx(1 / 12)  # gamma="auto" -> 1 / n_features after PCA
    assert card["head"]["gamma_param"] == "auto" and card["head"]["C"] == 1.0 and card["head"]["kernel"] == "rbf"
    assert card["head"]["classes"] == [0, 1]
    assert card["metrics"] == {"protocol": "cv", "auc": None, "n": 3}  # strict JSON: NaN -> null
    assert card["software"]["scikit-learn"] and card["software"]["numpy"] == np.__version__
    assert "not a medical device" in card["intended_use"].lower() and card["limitations"]
    assert card["training_data"]["fingerprint"] == "cd" * 32 and card["backbone"]["weights_sha256"] == "ab" * 32
    for name in (HEAD_FILE, ARRAYS_FILE):
        assert card["files"][name] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    lines = (out / CHECKSUMS_FILE).read_text().splitlines()
    assert {ln.split("  ")[1] for ln in lines} == {CARD_FILE, HEAD_FILE, ARRAYS_FILE}
    for ln in lines:
        digest, name = ln.split("  ")
        assert digest == hashlib.sha256((out / name).read_bytes()).hexdigest()


def test_same_model_same_bytes(fitted, tmp_path):
    head = fitted[0]["logreg_pca"]
    a = save_model(tmp_path / "a", head, _card())
    b = save_model(tmp_path / "b", head, _card())
    assert model_fingerprint(a) == model_fingerprint(b)
    load_model(a, expected_fingerprint=model_fingerprint(b))
    with pytest.raises(ModelIntegrityError, match="fingerprint"):
        load_model(a, expected_fingerprint="0" * 64)


@pytest.mark.parametrize("name", [CARD_FILE, HEAD_FILE, ARRAYS_FILE, CHECKSUMS_FILE])
@pytest.mark.parametrize("where", [0.1, 0.5, 0.97])
def test_one_flipped_byte_is_refused(name, where, fitted, tmp_path):
    out = save_model(tmp_path / "m", fitted[0]["paper_rbf_svc_pca"], _card())
    f = out / name
    data = bytearray(f.read_bytes())
    i = int(len(data) * where)
    data[i] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError):
        load_model(out)


def _reseal(out: Path) -> None:
    """Recompute every hash after an edit, as an attacker with write access would."""
    card = json.loads((out / CARD_FILE).read_text())
    for name in (HEAD_FILE, ARRAYS_FILE):
        card["files"][name] = hashlib.sha256((out / name).read_bytes()).hexdigest()
    (out / CARD_FILE).write_text(json.dumps(card))
    (out / CHECKSUMS_FILE).write_text("".join(
        f"{hashlib.sha256((out / n).read_bytes()).hexdigest()}  {n}\n" for n in (CARD_FILE, HEAD_FILE, ARRAYS_FILE)))


def _rewrite_npz(out: Path, edit) -> None:
    with np.load(out / ARRAYS_FILE, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    edit(arrays)
    np.savez(out / ARRAYS_FILE, **arrays)  # np.savez pickles object arrays silently


def test_resealed_folder_loads(fitted, tmp_path):
    """The helper used below produces a valid folder when nothing is changed."""
    out = save_model(tmp_path / "m", fitted[0]["paper_rbf_svc_pca"], _card())
    _rewrite_npz(out, lambda a: None)
    _reseal(out)
    load_model(out)


def test_pickled_object_array_is_refused_even_with_valid_hashes(fitted, tmp_path):
    out = save_model(tmp_path / "m", fitted[0]["paper_rbf_svc_pca"], _card())

    def add_object(arrays):
        arrays["svc/classes_"] = np.array([0, "malignant", {"x": 1}], dtype=object)

    _rewrite_npz(out, add_object)
    _reseal(out)
    with pytest.raises(ModelIntegrityError, match="pickled"):
        load_model(out)


def test_extra_npz_member_is_refused(fitted, tmp_path):
    out = save_model(tmp_path / "m", fitted[0]["logreg_no_pca"], _card())
    with zipfile.ZipFile(out / ARRAYS_FILE, "a") as zf:
        zf.writestr("payload.pkl", b"\x80\x04\x95....")
    _reseal(out)
    with pytest.raises(ModelIntegrityError, match="not arrays"):
        load_model(out)


def test_unused_array_is_refused(fitted, tmp_path):
    out = save_model(tmp_path / "m", fitted[0]["logreg_no_pca"], _card())
    _rewrite_npz(out, lambda a: a.__setitem__("extra/thing", np.zeros(3)))
    _reseal(out)
    with pytest.raises(ModelIntegrityError, match="no step uses"):
        load_model(out)


def _edit_head(out: Path, edit) -> None:
    doc = json.loads((out / HEAD_FILE).read_text())
    edit(doc)
    (out / HEAD_FILE).write_text(json.dumps(doc))
    _reseal(out)


def test_untrusted_class_is_refused(fitted, tmp_path):
    out = save_model(tmp_path / "m", fitted[0]["logreg_no_pca"], _card())
    _edit_head(out, lambda d: d["steps"][0].__setitem__("class", "os.system"))
    with pytest.raises(ModelIntegrityError, match="trusted"):
        load_model(out)


@pytest.mark.parametrize("attr", ["decision_function", "__class__", "__dict__", "C", "n_support_"])
def test_attribute_that_shadows_code_or_params_is_refused(attr, fitted, tmp_path):
    out = save_model(tmp_path / "m", fitted[0]["rbf_svc_no_pca"], _card())
    _edit_head(out, lambda d: d["steps"][1]["fitted"].__setitem__(attr, 1))
    with pytest.raises(ModelIntegrityError):
        load_model(out)


def test_changed_numbers_with_valid_hashes_fail_the_self_check(fitted, tmp_path):
    out = save_model(tmp_path / "m", fitted[0]["paper_rbf_svc_pca"], _card())
    _rewrite_npz(out, lambda a: a.__setitem__("svc/_intercept_", a["svc/_intercept_"] + 0.5))
    _reseal(out)
    with pytest.raises(ModelIntegrityError, match="reproduce"):
        load_model(out)


def test_unknown_missing_and_linked_files_are_refused(fitted, tmp_path):
    head = fitted[0]["logreg_no_pca"]
    out = save_model(tmp_path / "m", head, _card())
    (out / "notes.txt").write_text("hello")
    with pytest.raises(ModelIntegrityError, match="unexpected entries"):
        load_model(out)
    (out / "notes.txt").unlink()
    (out / "sub").mkdir()
    with pytest.raises(ModelIntegrityError, match="unexpected entries"):
        load_model(out)
    (out / "sub").rmdir()
    load_model(out)
    for name in (CHECKSUMS_FILE, ARRAYS_FILE):
        out = save_model(tmp_path / f"m-{name}", head, _card())
        (out / name).unlink()
        with pytest.raises(ModelIntegrityError, match="missing"):
            load_model(out)
    out = save_model(tmp_path / "m-link", head, _card())
    real = tmp_path / "elsewhere.npz"
    (out / ARRAYS_FILE).rename(real)
    (out / ARRAYS_FILE).symlink_to(real)
    with pytest.raises(ModelIntegrityError, match="symbolic link"):
        load_model(out)
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "nothing-here")


def test_newer_schema_gives_a_clear_error(fitted, tmp_path):
    out = save_model(tmp_path / "m", fitted[0]["logreg_no_pca"], _card())
    card = json.loads((out / CARD_FILE).read_text())
    card["schema_version"] = SCHEMA_VERSION + 1
    (out / CARD_FILE).write_text(json.dumps(card))
    _reseal(out)
    with pytest.raises(ModelError, match="newer.*upgrade mammocadx") as info:
        load_model(out)
    assert not isinstance(info.value, ModelIntegrityError)


@pytest.mark.parametrize("drop", ["backbone", "threshold", "training_data", "metrics", "config"])
def test_card_without_required_keys_is_refused(drop, fitted, tmp_path):
    card = _card()
    del card[drop]
    with pytest.raises(ModelError, match=drop):
        save_model(tmp_path / "m", fitted[0]["logreg_no_pca"], card)
    assert not (tmp_path / "m").exists()


def test_card_validation_details():
    validate_card(_card(metrics=None))
    validate_card(_card(metrics={}))
    with pytest.raises(ModelError, match="protocol"):
        validate_card(_card(metrics={"auc": 0.7}))
    with pytest.raises(ModelError, match="training_data.seed"):
        validate_card(_card(training_data={"fingerprint": "x", "n_lesions": 3, "seed": True}))
    with pytest.raises(ModelError, match="config.pseudocolor"):
        validate_card(_card(config={"mode": "paper"}))
    with pytest.raises(ModelError, match="threshold"):
        validate_card(_card(threshold="0"))
    with pytest.raises(ModelError, match="finite"):
        validate_card(_card(threshold=float("inf")))


def test_unsupported_or_unfitted_heads_are_refused(tmp_path):
    from sklearn.preprocessing import MinMaxScaler

    X, y, _ = _data()
    with pytest.raises(ModelError, match="cannot save"):
        save_model(tmp_path / "m", Pipeline([("mm", MinMaxScaler()), ("svc", SVC())]).fit(X, y), _card())
    with pytest.raises(ModelError, match="not fitted"):
        save_model(tmp_path / "m", Pipeline([("scaler", StandardScaler()), ("svc", SVC())]), _card())
    with pytest.raises(ModelError, match="Pipeline"):
        save_model(tmp_path / "m", SVC().fit(X, y), _card())
    assert not (tmp_path / "m").exists()


def test_save_replaces_a_model_but_never_a_folder_of_other_files(fitted, tmp_path):
    heads, X, _ = fitted
    out = save_model(tmp_path / "m", heads["logreg_no_pca"], _card())
    save_model(out, heads["paper_rbf_svc_pca"], _card())
    loaded, _ = load_model(out)
    assert np.array_equal(loaded.decision_function(X), heads["paper_rbf_svc_pca"].decision_function(X))
    with pytest.raises(ModelError, match="already exists"):
        save_model(out, heads["logreg_no_pca"], _card(), overwrite=False)
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(ModelError, match="not a mammocadx model"):
        save_model(precious, heads["logreg_no_pca"], _card())
    assert (precious / "thesis.tex").read_text() == "years of work"
    empty = tmp_path / "empty"
    empty.mkdir()
    save_model(empty, heads["logreg_no_pca"], _card())
    load_model(empty)


def test_interrupted_save_leaves_nothing_a_load_would_trust(fitted, tmp_path, monkeypatch):
    heads, X, _ = fitted
    good = heads["logreg_no_pca"]
    out = save_model(tmp_path / "m", good, _card())
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    calls = {"n": 0}
    real_write = Path.write_bytes

    def failing_write(self, data):
        calls["n"] += 1
        if calls["n"] == 2:  # the disk fills up while the second file is written
            real_write(self, data[: len(data) // 2])
            raise OSError(28, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", failing_write)
    with pytest.raises(OSError, match="No space"):
        save_model(out, heads["paper_rbf_svc_pca"], _card())
    calls["n"] = 0
    with pytest.raises(OSError, match="No space"):
        save_model(tmp_path / "fresh", heads["paper_rbf_svc_pca"], _card())
    monkeypatch.undo()

    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary folders left, no "fresh"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # previous model untouched
    loaded, _ = load_model(out)
    assert np.array_equal(loaded.decision_function(X), good.decision_function(X))


def test_partially_written_folder_is_not_trusted(fitted, tmp_path):
    """What a killed process could leave at a temporary name: files but no checksums."""
    out = save_model(tmp_path / "m", fitted[0]["logreg_no_pca"], _card())
    (out / CHECKSUMS_FILE).unlink()
    with pytest.raises(ModelIntegrityError, match="missing"):
        load_model(out)
    out = save_model(tmp_path / "m2", fitted[0]["logreg_no_pca"], _card())
    data = (out / ARRAYS_FILE).read_bytes()
    (out / ARRAYS_FILE).write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ModelIntegrityError, match="SHA-256"):
        load_model(out)


def test_malformed_checksums_and_json_are_refused(fitted, tmp_path):
    out = save_model(tmp_path / "m", fitted[0]["logreg_no_pca"], _card())
    good = (out / CHECKSUMS_FILE).read_text()
    for bad in ("", good + good.splitlines()[0] + "\n", good.replace("  head.json", "  ../head.json"),
                "\xff\xfe".encode("latin-1").decode("latin-1") + good):
        (out / CHECKSUMS_FILE).write_text(bad, encoding="latin-1")
        with pytest.raises(ModelIntegrityError):
            load_model(out)
    (out / CHECKSUMS_FILE).write_text(good)
    (out / CARD_FILE).write_text('{"format": "mammocadx-model", "schema_version": NaN}')
    _reseal_checksums_only(out)
    with pytest.raises(ModelIntegrityError, match="not valid JSON"):
        load_model(out)


def _reseal_checksums_only(out: Path) -> None:
    (out / CHECKSUMS_FILE).write_text("".join(
        f"{hashlib.sha256((out / n).read_bytes()).hexdigest()}  {n}\n" for n in (CARD_FILE, HEAD_FILE, ARRAYS_FILE)))


def test_card_and_checksums_must_agree(fitted, tmp_path):
    out = save_model(tmp_path / "m", fitted[0]["logreg_no_pca"], _card())
    card = json.loads((out / CARD_FILE).read_text())
    card["files"][ARRAYS_FILE] = "0" * 64
    (out / CARD_FILE).write_text(json.dumps(card))
    _reseal_checksums_only(out)
    with pytest.raises(ModelIntegrityError, match="files"):
        load_model(out)


def test_resaving_a_loaded_card_keeps_the_schema_current(fitted, tmp_path):
    head = fitted[0]["logreg_no_pca"]
    _, card = load_model(save_model(tmp_path / "a", head, _card()))
    card["schema_version"] = 0
    card["files"] = {"x": "y"}
    _, card2 = load_model(save_model(tmp_path / "b", head, card))
    assert card2["schema_version"] == SCHEMA_VERSION
    assert set(card2["files"]) == {HEAD_FILE, ARRAYS_FILE}
    assert card2["created_utc"] == "2026-01-01T00:00:00+00:00"


def test_trusted_list_is_small_and_explicit():
    assert set(persist.TRUSTED_ESTIMATORS) == {
        "sklearn.preprocessing.StandardScaler", "sklearn.decomposition.PCA", "sklearn.svm.SVC",
        "sklearn.svm.LinearSVC", "sklearn.linear_model.LogisticRegression"}


def test_attributes_set_on_the_pipeline_survive(fitted, tmp_path):
    """A mode that picks its own operating point stores it as ``head.threshold_``."""
    X, y, _ = _data()
    head = HEADS["logreg_pca"]().fit(X, y)
    head.threshold_ = -0.125
    loaded, _ = load_model(save_model(tmp_path / "m", head, _card(threshold=-0.125)))
    assert loaded.threshold_ == -0.125 and type(loaded.threshold_) is float
    out = save_model(tmp_path / "m2", head, _card())
    _edit_head(out, lambda d: d["pipeline_fitted"].__setitem__("predict", 1))
    with pytest.raises(ModelIntegrityError, match="shadow"):
        load_model(out)


def test_array_announcing_more_data_than_it_holds_is_refused_before_allocation(fitted, tmp_path):
    out = save_model(tmp_path / "m", fitted[0]["logreg_no_pca"], _card())
    with np.load(out / ARRAYS_FILE, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    with zipfile.ZipFile(out / ARRAYS_FILE, "w") as zf:
        for key, arr in arrays.items():
            with zf.open(f"{key}.npy", "w") as fh:
                if key == "lr/coef_":  # 8 TB announced, 16 bytes present
                    np.lib.format.write_array_header_1_0(
                        fh, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
                    fh.write(b"\0" * 16)
                else:
                    np.lib.format.write_array(fh, arr, allow_pickle=False)
    _reseal(out)
    with pytest.raises(ModelIntegrityError, match="announces"):
        load_model(out)


def test_deeply_nested_head_is_refused(fitted, tmp_path):
    out = save_model(tmp_path / "m", fitted[0]["logreg_no_pca"], _card())
    doc = json.loads((out / HEAD_FILE).read_text())
    for depth in (3000, 20000):  # beyond the JSON parser's recursion limit
        nested = "1"
        for _ in range(depth):
            nested = '{"__tuple__": [' + nested + "]}"
        text = json.dumps(doc).replace('"fitted": {', '"fitted": {"deep_": ' + nested + ", ", 1)
        (out / HEAD_FILE).write_text(text)
        _reseal(out)
        with pytest.raises(ModelIntegrityError):
            load_model(out)


def test_card_missing_required_keys_is_refused_on_load(fitted, tmp_path):
    out = save_model(tmp_path / "m", fitted[0]["logreg_no_pca"], _card())
    card = json.loads((out / CARD_FILE).read_text())
    del card["training_data"]
    (out / CARD_FILE).write_text(json.dumps(card))
    _reseal(out)
    with pytest.raises(ModelIntegrityError, match="training_data"):
        load_model(out)

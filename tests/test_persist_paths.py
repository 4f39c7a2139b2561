"""Output paths from untrusted ids (DICOM tags, CSV fields) stay inside the output folder."""
from __future__ import annotations

import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mammocadx.errors import MammocadxError
from mammocadx.io.paths import MAX_NAME_LENGTH, safe_join, safe_name

SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


@pytest.mark.parametrize("text", ["mdb005", "mdb005_1", "Mass-Training_P_00001_LEFT_CC", "1.2.840.10008.5.1", "_x"])
def test_clean_ids_are_kept_as_they_are(text):
    assert safe_name(text) == text


@pytest.mark.parametrize("text", [
    "..", ".", "", "../../etc/passwd", "/etc/passwd", "a/b", "a\\b", "C:\\Windows\\x", "a\x00b", ".hidden",
    "-rf", "CON", "nul.txt", "Åsa Öberg", "日本語", "patient \"quoted\" 'name'", "x" * 1000, "trailing.",
    "é" * 300, "\n\t", "a b\u202ec",
])
def test_hostile_ids_become_one_harmless_component(text, tmp_path):
    name = safe_name(text)
    assert SAFE.match(name), name
    assert 1 <= len(name) <= MAX_NAME_LENGTH
    assert name not in {".", ".."} and not name.endswith(".")
    assert name.split(".")[0].upper() not in {"CON", "NUL", "PRN", "AUX"}
    assert re.search(r"-[0-9a-f]{10}$", name)  # altered -> hash suffix
    path = safe_join(tmp_path, name)
    assert path.parent == tmp_path.resolve()
    path.write_text("ok")  # a real file system accepts it


def test_altered_names_do_not_collide():
    names = {safe_name(t) for t in ["a/b", "a b", "a:b", "a\\b", "a?b", "a_b"]}
    assert len(names) == 6
    long = ["y" * 500 + str(i) for i in range(5)]
    assert len({safe_name(t) for t in long}) == 5
    assert safe_name("Ångström").startswith("Angstrom-")
    assert safe_name(12345) == "12345"
    assert len(safe_name("z" * 300, max_length=40)) == 40


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.text(min_size=0, max_size=400))
def test_safe_name_fuzz(text):
    name = safe_name(text)
    assert SAFE.match(name) and len(name) <= MAX_NAME_LENGTH
    assert safe_name(text) == name  # stable
    if SAFE.match(text) and len(text) <= MAX_NAME_LENGTH and not text.endswith("."):
        assert name == text or text.split(".")[0].upper() in {"CON", "PRN", "AUX", "NUL"} or \
            re.fullmatch(r"(COM|LPT)[1-9]", text.split(".")[0].upper())


def test_safe_join_keeps_inside_and_refuses_escapes(tmp_path):
    root = tmp_path / "out"
    root.mkdir()
    assert safe_join(root, "gradcam", "mdb005.png") == root.resolve() / "gradcam" / "mdb005.png"
    assert safe_join(root, "a/../b") == root.resolve() / "b"
    for parts in [("..",), ("../x",), ("a", "..", ".."), ("/etc/passwd",), ("C:\\x",), ("\\\\server\\share",),
                  ("a\x00b",), ("",), ("a/..",)]:
        with pytest.raises(MammocadxError):
            safe_join(root, *parts)


def test_safe_join_refuses_symlinks_that_lead_out(tmp_path):
    root = tmp_path / "out"
    root.mkdir()
    outside = tmp_path / "secret"
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(MammocadxError, match="leave the output folder"):
        safe_join(root, "link", "file.txt")
    os.symlink(root / "inner", root / "inlink")
    assert safe_join(root, "inlink", "f") == root.resolve() / "inner" / "f"

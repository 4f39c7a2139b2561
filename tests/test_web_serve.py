"""``mammocadx serve``: localhost by default, limits passed on, the model warmed up before serving."""
from __future__ import annotations

import pytest

import mammocadx.web.app as web_app
from conftest_web import FakePredictor
from mammocadx.cli import main


class _Warm(FakePredictor):
    warmed = 0

    def warm_up(self) -> None:
        type(self).warmed += 1


@pytest.fixture
def captured(monkeypatch):
    calls: dict = {}
    real_create = web_app.create_app

    def fake_create(model_dir=None, predictor=None, config=None):
        calls["model_dir"], calls["config"] = model_dir, config
        return real_create(predictor=_Warm(), config=config)

    def fake_run(app, host, port, **kw):
        calls.update(app=app, host=host, port=port)

    import uvicorn

    monkeypatch.setattr(web_app, "create_app", fake_create)
    monkeypatch.setattr(uvicorn, "run", fake_run)
    _Warm.warmed = 0
    return calls


def test_serve_defaults_to_localhost(captured, tmp_path):
    assert main(["serve", str(tmp_path)]) == 0
    assert captured["host"] == "127.0.0.1" and captured["port"] == 8000
    assert captured["model_dir"] == tmp_path
    assert captured["config"].max_upload_bytes == 64 * 1024 * 1024 and captured["config"].timeout_s == 60
    assert _Warm.warmed == 1


def test_serve_options(captured, tmp_path, caplog):
    assert main(["serve", str(tmp_path), "--host", "0.0.0.0", "--port", "8123", "--max-upload-mb", "2",
                 "--timeout", "5"]) == 0
    assert (captured["host"], captured["port"]) == ("0.0.0.0", 8123)
    assert captured["config"].max_upload_bytes == 2 * 1024 * 1024 and captured["config"].timeout_s == 5
    assert "no authentication" in caplog.text
    assert captured["config"].allowed_hosts == ()  # 0.0.0.0 names no host: only local names by default


def test_serve_allowed_hosts(captured, tmp_path):
    assert main(["serve", str(tmp_path), "--host", "192.168.1.5", "--allow-host", "reader.lan"]) == 0
    assert captured["config"].allowed_hosts == ("192.168.1.5", "reader.lan")
    assert {"localhost", "127.0.0.1", "::1", "reader.lan", "192.168.1.5"} == captured["config"].host_names()


def test_serve_missing_model_is_a_clear_error(tmp_path, capsys):
    pytest.importorskip("mammocadx.model.persist", reason="model files (model/persist.py) not on this branch yet")
    code = main(["serve", str(tmp_path / "nope")])
    assert code == 2
    assert "nope" in capsys.readouterr().err

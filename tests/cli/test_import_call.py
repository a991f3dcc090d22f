"""`finalpos_async.cli.import_file` (the command as a call) and `finalpos_async.celery`'s pieces
that need no broker: tenants' keys, the job message, refusals."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from finalpos_async.celery import (
    TASK_NAME,
    api_key_for,
    enqueue_import,
    import_worker,
    use_api_keys,
)
from finalpos_async.cli import import_file
from finalpos_async.sandbox import Sandbox


def write_csv(path: Path, rows: int) -> None:
    lines = ["email,firstName,lastName"] + [f"k{n}@example.com,K,{n}" for n in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_import_file_runs_the_command_and_returns_its_status(tmp_path: Path) -> None:
    source = tmp_path / "customers.csv"
    write_csv(source, 5)
    out = io.StringIO()
    with Sandbox().run_in_thread() as sb:
        assert sb.url is not None
        status = import_file(
            "customers", source, api_key=sb.api_key, base_url=sb.url, key="email", output=out
        )
        assert sb.storage is not None
        stored = sb.storage.list("CustomerDto", 0, None)
    assert status == 0, out.getvalue()
    assert sorted(r["email"] for r in stored) == [f"k{n}@example.com" for n in range(5)]
    assert "Import summary" in out.getvalue()
    assert sb.api_key not in out.getvalue()


def test_import_file_refuses_what_does_not_go_together(tmp_path: Path) -> None:
    source = tmp_path / "customers.csv"
    write_csv(source, 1)
    with pytest.raises(ValueError, match="worker=True shares the job through a PostgreSQL journal"):
        import_file("customers", source, api_key="k", worker=True)
    with pytest.raises(ValueError, match="unknown resource 'widgets'"):
        import_file("widgets", source, api_key="k")


def test_each_tenant_s_key_comes_from_the_worker_s_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FINALPOS_API_KEY", "sk_default")
    monkeypatch.setenv("FINALPOS_API_KEY_ACME_CO", "sk_acme")
    assert api_key_for("") == "sk_default"
    assert api_key_for("acme-co") == "sk_acme"
    with pytest.raises(LookupError, match="set FINALPOS_API_KEY_GLOBEX in its environment"):
        api_key_for("globex")
    use_api_keys(lambda tenant: f"sk_from_vault_{tenant}")
    try:
        assert api_key_for("globex") == "sk_from_vault_globex"
    finally:
        use_api_keys(None)
    assert api_key_for("acme-co") == "sk_acme"


class Recorder:
    """A stand-in Celery app: what `send_task` was asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def send_task(self, name: str, args: tuple[Any, ...], **options: Any) -> str:
        self.sent.append((name, args, options))
        return "result"


def test_enqueue_sends_the_job_without_secrets(tmp_path: Path) -> None:
    app = Recorder()
    results = enqueue_import(
        "customers",
        tmp_path / "c.csv",
        tasks=3,
        key="email",
        tenant="acme",
        rate=50,
        journal="postgresql://importer@db.internal/finalpos",
        app=app,  # type: ignore[arg-type]  # a stand-in for a Celery app
        queue="imports",
    )
    assert results == ["result"] * 3
    name, args, options = app.sent[0]
    assert name == TASK_NAME
    assert options == {"queue": "imports"}
    assert args[0] == {
        "resource": "customers",
        "file": str(tmp_path / "c.csv"),
        "key": "email",
        "chunks": 16,
        "lease": 30.0,
        "rate": 50,
        "tenant": "acme",
        "journal": "postgresql://importer@db.internal/finalpos",
    }
    with pytest.raises(ValueError, match="holds a password") as refused:
        enqueue_import("customers", "c.csv", journal="postgresql://u:hunter2@db/x", app=app)  # type: ignore[arg-type]  # a stand-in
    assert "hunter2" not in str(refused.value)
    with pytest.raises(ValueError, match="tasks must be at least 1"):
        enqueue_import("customers", "c.csv", tasks=0, app=app)  # type: ignore[arg-type]  # a stand-in


def test_a_task_refuses_a_job_it_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FINALPOS_JOURNAL", raising=False)
    with pytest.raises(ValueError, match="has no field 'password'"):
        import_worker.run({"resource": "customers", "file": "c.csv", "password": "x"})
    with pytest.raises(LookupError, match="set FINALPOS_JOURNAL on this worker"):
        import_worker.run({"resource": "customers", "file": "c.csv"})

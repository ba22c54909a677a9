"""`featureplane metadata rotate-key` when the key is in $FEATUREPLANE_METADATA_KEY: `up` keeps using the
variable, so rotating into the state folder's metadata.key would leave a snapshot the next start cannot
decrypt. The command refuses that, and rotates into an explicit --new-key-file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from actors.settings import store_dir
from deploy import cli
from stores.metadata import DEFAULT_KEY_ENV_VAR, EncryptedSnapshotStore, MetadataKey
from stores.metadata_key import load_metadata_key

STATE = b"registry snapshot"


def _snapshot(state_dir: Path, key: MetadataKey) -> Path:
    folder = store_dir(state_dir, "fp", "control_plane-0") / "metadata"
    with EncryptedSnapshotStore(folder, key) as store:
        store.save(STATE, {("fp-control.events", 0): 3})
    return folder


def _loads_with(folder: Path, key: MetadataKey) -> bytes | None:
    with EncryptedSnapshotStore(folder, key) as store:
        loaded = store.load()
    return None if loaded is None else loaded[0]


@pytest.fixture
def key_in_env(monkeypatch: pytest.MonkeyPatch) -> MetadataKey:
    key = MetadataKey.generate()
    monkeypatch.setenv(DEFAULT_KEY_ENV_VAR, key.to_text())
    return key


def test_rotating_into_metadata_key_is_refused_when_the_key_is_in_the_environment(
        tmp_path: Path, key_in_env: MetadataKey, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _snapshot(tmp_path, key_in_env)
    assert cli.main(["--state-dir", str(tmp_path), "metadata", "rotate-key"]) == 2
    said = capsys.readouterr().err
    assert DEFAULT_KEY_ENV_VAR in said
    assert "--new-key-file" in said
    assert not (tmp_path / "metadata.key").exists()
    assert _loads_with(folder, key_in_env) == STATE  # untouched: the variable's key still opens it


def test_an_explicit_new_key_file_is_made_used_and_named(
        tmp_path: Path, key_in_env: MetadataKey, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    folder, new_file = _snapshot(tmp_path, key_in_env), tmp_path / "keys" / "new.key"
    new_file.parent.mkdir()
    assert cli.main(["--state-dir", str(tmp_path), "metadata", "rotate-key", "--new-key-file", str(new_file)]) == 0
    said = capsys.readouterr().out
    assert f"--metadata-key-file {new_file}" in said
    assert f"unset {DEFAULT_KEY_ENV_VAR}" in said
    assert stat.S_IMODE(new_file.stat().st_mode) == 0o600
    monkeypatch.delenv(DEFAULT_KEY_ENV_VAR)  # as the message says; then the file's key opens the snapshot
    new = load_metadata_key(new_file)
    assert new != key_in_env
    assert _loads_with(folder, new) == STATE


def test_without_the_variable_the_state_folders_key_is_replaced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(DEFAULT_KEY_ENV_VAR, raising=False)
    old = MetadataKey.generate()
    (tmp_path / "metadata.key").write_text(old.to_text() + "\n")
    (tmp_path / "metadata.key").chmod(0o600)
    folder = _snapshot(tmp_path, old)
    assert cli.main(["--state-dir", str(tmp_path), "metadata", "rotate-key"]) == 0
    new = load_metadata_key(tmp_path / "metadata.key")
    assert new != old
    assert _loads_with(folder, new) == STATE
    assert "now in" in capsys.readouterr().out

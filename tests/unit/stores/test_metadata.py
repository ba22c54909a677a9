"""The encrypted metadata snapshot: round trips, refuses wrong keys and tampering, never writes plaintext,
rotates keys atomically; and the key itself: its text form, key files, the environment, its repr."""

from __future__ import annotations

import base64
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from events.errors import StoreError
from stores import metadata
from stores.metadata import SNAPSHOT, EncryptedSnapshotStore, MetadataKey, rotate_key
from stores.metadata_key import load_metadata_key, write_key_file
from stores.offsets import AppliedOffsets

ENV = "FEATUREPLANE_METADATA_KEY"
FEATURE_VALUE = b"SECRET-FEATURE-VALUE-42"
VIEW_NAME = b"plaintext_view_name"
TOPIC_NAME = "plaintext_control_topic"
MARKERS = (FEATURE_VALUE, VIEW_NAME, TOPIC_NAME.encode())

# What a control-plane state might hold, with the markers planted where real names and values go.
STATE: bytes = msgpack.packb({
    "feature_views": {VIEW_NAME.decode(): {"entities": ["user"], "default": FEATURE_VALUE.decode()}},
    "principals": {"alice": {"roles": ["admin"], "api_key_sha256": "ab" * 32}},
})
APPLIED: AppliedOffsets = {(TOPIC_NAME, 0): 17, (TOPIC_NAME, 3): 4}


@pytest.fixture
def key() -> MetadataKey:
    return MetadataKey.generate()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "metadata"


@pytest.fixture
def store(folder: Path, key: MetadataKey) -> Iterator[EncryptedSnapshotStore]:
    with EncryptedSnapshotStore(folder, key) as opened:
        yield opened


def load_with(folder: Path, key: MetadataKey) -> tuple[bytes, AppliedOffsets] | None:
    with EncryptedSnapshotStore(folder, key) as opened:
        return opened.load()


def markers_in(folder: Path) -> list[tuple[str, bytes]]:
    """Every (file, marker) such that the marker's bytes occur in the file, hidden files included."""
    return [(path.name, marker) for path in sorted(folder.rglob("*")) if path.is_file()
            for marker in MARKERS if marker in path.read_bytes()]


# --- the snapshot ------------------------------------------------------------------------------------------


def test_load_is_none_before_the_first_save(store: EncryptedSnapshotStore) -> None:
    assert store.load() is None


def test_state_and_applied_offsets_round_trip(store: EncryptedSnapshotStore) -> None:
    store.save(STATE, APPLIED)
    assert store.load() == (STATE, APPLIED)


def test_the_last_save_wins_and_survives_reopening(folder: Path, key: MetadataKey) -> None:
    with EncryptedSnapshotStore(folder, key) as store:
        store.save(b"first", {("control", 0): 1})
        store.save(b"second", {})
    assert load_with(folder, key) == (b"second", {})


@pytest.mark.parametrize("applied", [{}, {("t", 0): 0}, {("a", 1): 2**40, ("b", 0): 5, ("é-topic", 7): 3}])
def test_applied_offsets_round_trip(store: EncryptedSnapshotStore, applied: AppliedOffsets) -> None:
    store.save(b"state", applied)
    assert store.load() == (b"state", applied)


@pytest.mark.parametrize("applied", [{("t", -1): 0}, {("t", 0): -5}, {"not-a-pair": 1}])
def test_malformed_applied_offsets_are_refused_before_writing(
    store: EncryptedSnapshotStore, folder: Path, applied: Any
) -> None:
    with pytest.raises(StoreError):
        store.save(b"state", applied)
    assert not (folder / SNAPSHOT).exists()


@settings(max_examples=40, deadline=None)
@given(
    state=st.binary(max_size=4096),
    applied=st.dictionaries(st.tuples(st.text(max_size=20), st.integers(0, 1000)), st.integers(0, 2**63 - 1),
                            max_size=5),
)
def test_any_state_round_trips(state: bytes, applied: AppliedOffsets) -> None:
    key = MetadataKey.generate()
    with tempfile.TemporaryDirectory() as directory, EncryptedSnapshotStore(Path(directory), key) as store:
        store.save(state, applied)
        assert store.load() == (state, applied)


def test_the_file_is_laid_out_as_documented(store: EncryptedSnapshotStore, key: MetadataKey, folder: Path) -> None:
    # Another implementation (or a recovery script) must be able to read a snapshot from the docstring alone.
    store.save(STATE, APPLIED)
    sealed = (folder / SNAPSHOT).read_bytes()
    header, ciphertext = sealed[:30], sealed[30:]
    assert header[:8] == b"FPMETA\x00\x01"
    assert int.from_bytes(header[8:10], "big") == metadata.FORMAT_VERSION
    assert header[10:18] == key.key_id.encode()
    body = AESGCM(key.secret).decrypt(header[18:30], ciphertext, header)
    assert msgpack.unpackb(body) == {"state": STATE, "applied": [[TOPIC_NAME, 0, 17], [TOPIC_NAME, 3, 4]]}
    with pytest.raises(InvalidTag):  # the header is the associated data: without it nothing decrypts
        AESGCM(key.secret).decrypt(header[18:30], ciphertext, None)


def test_each_save_uses_a_fresh_nonce(store: EncryptedSnapshotStore, folder: Path) -> None:
    nonces = set()
    for _ in range(3):
        store.save(STATE, APPLIED)
        nonces.add((folder / SNAPSHOT).read_bytes()[18:30])
    assert len(nonces) == 3


def test_a_wrong_key_is_refused_naming_both_key_ids(folder: Path, key: MetadataKey) -> None:
    with EncryptedSnapshotStore(folder, key) as store:
        store.save(STATE, APPLIED)
    other = MetadataKey.generate()
    with pytest.raises(StoreError, match=f"encrypted with key {key.key_id}, this process has {other.key_id}"):
        load_with(folder, other)


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_any_changed_byte_is_detected(store: EncryptedSnapshotStore, folder: Path, mask: int) -> None:
    store.save(STATE, APPLIED)
    path = folder / SNAPSHOT
    original = path.read_bytes()
    for position in range(len(original)):
        changed = bytearray(original)
        changed[position] ^= mask
        path.write_bytes(bytes(changed))
        with pytest.raises(StoreError):
            store.load()
    path.write_bytes(original)
    assert store.load() == (STATE, APPLIED)  # the loop really did restore and test a loadable file


@pytest.mark.parametrize(("region", "message"), [
    (slice(0, 8), "not a featureplane metadata snapshot"),   # magic
    (slice(10, 18), "encrypted with key"),                   # key id
    (slice(18, 30), "authentication failed"),                # nonce
    (slice(30, 31), "authentication failed"),                # ciphertext
    (slice(-1, None), "authentication failed"),              # tag
])
def test_tampering_says_what_failed(
    store: EncryptedSnapshotStore, folder: Path, region: slice, message: str
) -> None:
    store.save(STATE, APPLIED)
    changed = bytearray((folder / SNAPSHOT).read_bytes())
    changed[region] = bytes(b ^ 0x5A for b in changed[region])
    (folder / SNAPSHOT).write_bytes(bytes(changed))
    with pytest.raises(StoreError, match=message):
        store.load()


def test_a_newer_format_version_is_refused(store: EncryptedSnapshotStore, folder: Path) -> None:
    store.save(STATE, APPLIED)
    changed = bytearray((folder / SNAPSHOT).read_bytes())
    changed[8:10] = (metadata.FORMAT_VERSION + 1).to_bytes(2, "big")
    (folder / SNAPSHOT).write_bytes(bytes(changed))
    with pytest.raises(StoreError, match="newer than this code supports"):
        store.load()


@pytest.mark.parametrize("keep", [0, 5, 10, 30, 45])
def test_a_truncated_snapshot_is_refused(store: EncryptedSnapshotStore, folder: Path, keep: int) -> None:
    store.save(STATE, APPLIED)
    (folder / SNAPSHOT).write_bytes((folder / SNAPSHOT).read_bytes()[:keep])
    with pytest.raises(StoreError):
        store.load()


def test_the_marker_scan_finds_plaintext() -> None:
    # Without this, the scans below could pass by never looking.
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / ".hidden").write_bytes(b"xx" + STATE + b"yy")
        assert {marker for _, marker in markers_in(Path(directory))} == {FEATURE_VALUE, VIEW_NAME}


def test_no_file_ever_holds_plaintext_state(
    folder: Path, key: MetadataKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    renamed: list[bytes] = []
    real_replace = os.replace

    def spy(source: Any, destination: Any) -> None:
        renamed.append(Path(source).read_bytes())  # the temporary file, as it was about to become the snapshot
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", spy)
    with EncryptedSnapshotStore(folder, key) as store:
        store.save(STATE, APPLIED)
        store.save(STATE + b"again", APPLIED)
    new = MetadataKey.generate()
    rotate_key(folder, key, new)
    assert len(renamed) == 3
    assert not [marker for content in renamed for marker in MARKERS if marker in content]
    assert markers_in(folder) == []
    assert load_with(folder, new) == (STATE + b"again", APPLIED)


def test_files_are_private(folder: Path, store: EncryptedSnapshotStore) -> None:
    store.save(STATE, APPLIED)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / SNAPSHOT).stat().st_mode) == 0o600


def test_a_leftover_temporary_file_is_removed_on_open(folder: Path, key: MetadataKey) -> None:
    folder.mkdir()
    leftover = folder / f".{SNAPSHOT}.tmp"
    leftover.write_bytes(b"half a write")
    with EncryptedSnapshotStore(folder, key) as store:
        assert not leftover.exists()
        assert store.load() is None


def test_one_store_per_folder(folder: Path, key: MetadataKey) -> None:
    with EncryptedSnapshotStore(folder, key), pytest.raises(StoreError, match="open by another"):
        EncryptedSnapshotStore(folder, key)
    with EncryptedSnapshotStore(folder, key) as store:  # closing released the lock
        assert store.load() is None


def test_a_closed_store_refuses_use(folder: Path, key: MetadataKey) -> None:
    store = EncryptedSnapshotStore(folder, key)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.load()
    with pytest.raises(StoreError, match="closed"):
        store.save(b"state", {})


# --- key rotation ------------------------------------------------------------------------------------------


@pytest.fixture
def saved(folder: Path, key: MetadataKey) -> bytes:
    """A folder holding one snapshot of STATE under `key`; the snapshot's bytes."""
    with EncryptedSnapshotStore(folder, key) as store:
        store.save(STATE, APPLIED)
    return (folder / SNAPSHOT).read_bytes()


def test_after_rotation_only_the_new_key_opens_the_snapshot(folder: Path, key: MetadataKey, saved: bytes) -> None:
    new = MetadataKey.generate()
    rotate_key(folder, key, new)
    assert load_with(folder, new) == (STATE, APPLIED)
    with pytest.raises(StoreError, match=f"encrypted with key {new.key_id}, this process has {key.key_id}"):
        load_with(folder, key)
    assert markers_in(folder) == []


def test_rotating_with_a_wrong_old_key_changes_nothing(folder: Path, key: MetadataKey, saved: bytes) -> None:
    with pytest.raises(StoreError, match="encrypted with key"):
        rotate_key(folder, MetadataKey.generate(), MetadataKey.generate())
    assert (folder / SNAPSHOT).read_bytes() == saved
    assert load_with(folder, key) == (STATE, APPLIED)


def _fail(*args: object) -> None:
    raise OSError(5, "simulated I/O error")


@pytest.mark.parametrize("step", ["replace", "fsync"])
def test_a_failed_rotation_leaves_the_old_snapshot(
    folder: Path, key: MetadataKey, saved: bytes, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    # "replace": encrypted and written, not renamed yet; "fsync": the temporary file never became durable.
    with monkeypatch.context() as patched:
        patched.setattr(os, step, _fail)
        with pytest.raises(StoreError, match="simulated I/O error"):
            rotate_key(folder, key, MetadataKey.generate())
    assert (folder / SNAPSHOT).read_bytes() == saved
    assert sorted(p.name for p in folder.iterdir()) == [".lock", SNAPSHOT]  # no temporary left
    assert load_with(folder, key) == (STATE, APPLIED)


def test_rotation_needs_the_store_closed(folder: Path, key: MetadataKey, saved: bytes) -> None:
    with EncryptedSnapshotStore(folder, key), pytest.raises(StoreError, match="open by another"):
        rotate_key(folder, key, MetadataKey.generate())
    assert (folder / SNAPSHOT).read_bytes() == saved


def test_rotation_refuses_a_missing_snapshot_and_the_same_key(tmp_path: Path, key: MetadataKey) -> None:
    with pytest.raises(StoreError, match="no snapshot"):
        rotate_key(tmp_path / "typo", key, MetadataKey.generate())
    assert not (tmp_path / "typo").exists()
    with pytest.raises(StoreError, match="the new key is the old key"):
        rotate_key(tmp_path, key, MetadataKey(key.secret))


# --- the key ----------------------------------------------------------------------------------------------


def test_key_text_round_trips_and_whitespace_is_ignored(key: MetadataKey) -> None:
    text = key.to_text()
    assert len(text) == 44
    assert MetadataKey.from_text(f"  {text}\n") == key
    assert MetadataKey.from_text(text).key_id == key.key_id


def _near_miss(text: str, position: int, char: str) -> str:
    return text[:position] + char + text[position + 1:]


def _same_bytes_other_spelling(text: str) -> str:
    # The 43rd character carries 4 bits of the key and 2 unused ones; flipping an unused bit decodes the same.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return _near_miss(text, 42, alphabet[alphabet.index(text[42]) ^ 1])


@pytest.mark.parametrize(("make_text", "message"), [
    (lambda t: "", "got 0 characters"),
    (lambda t: t[:43], "got 43 characters"),
    (lambda t: t + "A", "got 45 characters"),
    (lambda t: t[:43] + "A", "not url-safe base64 of 32 bytes"),  # no padding: 33 bytes
    (lambda t: _near_miss(t, 3, "!"), "not url-safe base64"),
    (lambda t: _near_miss(t, 3, "+"), "not url-safe base64"),  # the standard alphabet
    (lambda t: _near_miss(t, 20, "="), "not url-safe base64"),
    (lambda t: base64.urlsafe_b64encode(os.urandom(33)).decode(), "not url-safe base64 of 32 bytes"),
    (lambda t: base64.urlsafe_b64encode(os.urandom(31)).decode(), "not url-safe base64 of 32 bytes"),  # "=="
    (_same_bytes_other_spelling, "not the canonical url-safe base64"),
])
def test_from_text_refuses_anything_but_a_key(key: MetadataKey, make_text: Callable[[str], str], message: str) -> None:
    text = make_text(key.to_text())
    with pytest.raises(StoreError, match=message) as raised:
        MetadataKey.from_text(text)
    if len(text) > 8:
        assert text not in str(raised.value)  # a near miss may be a real key, mistyped


def test_a_key_is_32_bytes() -> None:
    with pytest.raises(StoreError, match="32 bytes"):
        MetadataKey(b"short")


def test_repr_and_str_show_only_the_key_id(key: MetadataKey) -> None:
    for shown in (repr(key), str(key), f"{key}", repr([key])):
        assert key.key_id in shown
        for secret_form in (key.to_text(), key.secret.hex(), repr(key.secret), key.to_text()[:12]):
            assert secret_form not in shown


def test_key_id_is_8_hex_digits_and_differs_per_key(key: MetadataKey) -> None:
    assert len(key.key_id) == 8
    int(key.key_id, 16)
    assert key.key_id != MetadataKey.generate().key_id
    assert key != MetadataKey.generate()
    assert key == MetadataKey(key.secret)
    assert hash(key) == hash(MetadataKey(key.secret))


def test_a_key_file_is_created_0600_and_read_back(tmp_path: Path, key: MetadataKey) -> None:
    old_umask = os.umask(0)  # the most permissive umask must not widen the file
    try:
        write_key_file(tmp_path / "metadata.key", key)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "metadata.key").stat().st_mode) == 0o600
    assert MetadataKey.from_file(tmp_path / "metadata.key") == key
    assert [p.name for p in tmp_path.iterdir()] == ["metadata.key"]  # no temporary left


def test_a_key_file_is_never_created_readable_by_others(
    tmp_path: Path, key: MetadataKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The mode must be right at creation, not fixed by a chmod afterwards.
    created: list[tuple[int, int]] = []
    real_open = os.open

    def spy(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        if flags & os.O_CREAT:
            created.append((flags, mode))
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    write_key_file(tmp_path / "metadata.key", key)
    assert created
    assert all(mode == 0o600 and flags & os.O_EXCL for flags, mode in created)


def test_an_existing_key_file_is_never_overwritten(tmp_path: Path, key: MetadataKey) -> None:
    path = tmp_path / "metadata.key"
    write_key_file(path, key)
    with pytest.raises(StoreError, match="already exists"):
        write_key_file(path, MetadataKey.generate())
    assert MetadataKey.from_file(path) == key


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_readable_beyond_its_owner_is_refused(tmp_path: Path, key: MetadataKey, mode: int) -> None:
    path = tmp_path / "metadata.key"
    write_key_file(path, key)
    path.chmod(mode)
    with pytest.raises(StoreError, match="chmod 600") as raised:
        MetadataKey.from_file(path)
    assert key.to_text() not in str(raised.value)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_key_files_are_accepted(tmp_path: Path, key: MetadataKey, mode: int) -> None:
    path = tmp_path / "metadata.key"
    write_key_file(path, key)
    path.chmod(mode)
    assert MetadataKey.from_file(path) == key


def test_a_missing_or_malformed_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot read key file"):
        MetadataKey.from_file(tmp_path / "absent.key")
    garbage = tmp_path / "garbage.key"
    garbage.write_bytes(b"\xff" * 44)
    garbage.chmod(0o600)
    with pytest.raises(StoreError, match=r"garbage\.key"):
        MetadataKey.from_file(garbage)


def test_from_env(monkeypatch: pytest.MonkeyPatch, key: MetadataKey) -> None:
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(StoreError, match="not set"):
        MetadataKey.from_env()
    monkeypatch.setenv(ENV, " ")
    with pytest.raises(StoreError, match="empty"):
        MetadataKey.from_env()
    monkeypatch.setenv(ENV, "not-a-key")
    with pytest.raises(StoreError, match=ENV):
        MetadataKey.from_env()
    monkeypatch.setenv(ENV, key.to_text())
    assert MetadataKey.from_env() == key
    monkeypatch.setenv("OTHER_VAR", key.to_text())
    assert MetadataKey.from_env("OTHER_VAR") == key


def test_load_metadata_key_takes_a_file_or_the_environment(
    tmp_path: Path, key: MetadataKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "metadata.key"
    write_key_file(path, key)
    monkeypatch.delenv(ENV, raising=False)
    assert load_metadata_key(path) == key
    with pytest.raises(StoreError, match=f"no metadata key.*{ENV}"):
        load_metadata_key(None)
    monkeypatch.setenv(ENV, key.to_text())
    assert load_metadata_key(None) == key
    assert load_metadata_key(path) == key  # both, agreeing


def test_load_metadata_key_refuses_two_different_keys(
    tmp_path: Path, key: MetadataKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "metadata.key"
    write_key_file(path, key)
    other = MetadataKey.generate()
    monkeypatch.setenv(ENV, other.to_text())
    with pytest.raises(StoreError, match=f"key {key.key_id} in .* and key {other.key_id} in {ENV}"):
        load_metadata_key(path)

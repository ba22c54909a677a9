"""The control plane's metadata snapshot, encrypted at rest under a customer-managed key (AES-256-GCM).

The control plane's state (feature definitions, principals, API-key hashes, roles) is a fold over the
control-events topic. To restart without replaying the whole topic it keeps one snapshot: the state as
bytes plus the applied offsets it reflects; it replays the topic from those offsets on start-up.

Layout: `folder/snapshot.fpmeta` (mode 0600), `folder/.lock`, and `folder/.snapshot.fpmeta.tmp` only
while a write is in flight. The snapshot file is

    magic            8 bytes   b"FPMETA\\x00\\x01"
    format version   2 bytes   big-endian; checked before anything else is read
    key id           8 bytes   ASCII hex: which key encrypted the file (safe to store, see metadata_key)
    nonce           12 bytes   random per write
    ciphertext      the rest   AES-GCM of msgpack {"state": bytes, "applied": [[topic, partition, next]]},
                               ending in the 16-byte tag

The 30 header bytes are the associated data, so a header changed on disk fails authentication like a
changed ciphertext does. Only ciphertext is ever written (the temporary file too): the plaintext exists
in memory only. The snapshot's size is not hidden.

Random 96-bit nonces are safe for about 2**32 writes under one key (NIST SP 800-38D); a snapshot is
written per batch of control events at most, and `rotate_key` starts a new count.

One process at a time opens a folder (an exclusive lock file): a `rotate_key` while the control plane
runs would otherwise race its next save, which would write under the old key again.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import struct
from pathlib import Path

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from events.errors import StoreError
from stores.files import fsync_dir
from stores.metadata_key import DEFAULT_KEY_ENV_VAR, MetadataKey, load_metadata_key, write_key_file
from stores.offsets import (
    UNPACK_ERRORS,
    AppliedOffsets,
    ClosableStore,
    applied_from_rows,
    applied_to_rows,
    check_format_version,
)

FORMAT_VERSION = 1
SNAPSHOT = "snapshot.fpmeta"
MAGIC = b"FPMETA\x00\x01"

# Magic and version come first and keep their place in every format version; the rest of the header is
# version 1's and is parsed only once the version is known.
_PREFIX = struct.Struct(">8sH")
_HEADER_V1 = struct.Struct(">8sH8s12s")
_NONCE_BYTES = 12
_TAG_BYTES = 16

__all__ = ["DEFAULT_KEY_ENV_VAR", "FORMAT_VERSION", "SNAPSHOT", "EncryptedSnapshotStore", "MetadataKey",
           "load_metadata_key", "rotate_key", "write_key_file"]


class EncryptedSnapshotStore(ClosableStore):
    """The latest snapshot of the control plane's state, sealed with `key`; one writer per folder."""

    def __init__(self, folder: Path, key: MetadataKey) -> None:
        if not isinstance(key, MetadataKey):
            raise StoreError(f"the metadata store needs a MetadataKey, got {type(key).__name__}")
        self._folder = folder
        self._key = key
        self._what = f"metadata store {folder}"
        self._lock_fd: int | None = _lock(folder, self._what)

    @property
    def key_id(self) -> str:
        return self._key.key_id

    def save(self, state: bytes, applied: AppliedOffsets) -> None:
        """Replace the snapshot with `state` and the offsets it reflects, atomically."""
        self._check_open()
        if not isinstance(state, bytes):
            raise StoreError(f"snapshot state must be bytes, got {type(state).__name__}")
        body = msgpack.packb({"state": state, "applied": _applied_rows(applied, self._what)})
        _write_atomically(self._folder / SNAPSHOT, _seal(body, self._key), self._what)

    def load(self) -> tuple[bytes, AppliedOffsets] | None:
        """The last saved state and applied offsets; None before the first save."""
        self._check_open()
        sealed = _read(self._folder / SNAPSHOT, self._what)
        if sealed is None:
            return None
        return _decode_body(_open_sealed(sealed, self._key, self._what), self._what)

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the lock
            self._lock_fd = None
        super().close()


def rotate_key(folder: Path, old: MetadataKey, new: MetadataKey) -> None:
    """Re-encrypt the snapshot in `folder` from `old` to `new`, atomically.

    Afterwards only `new` opens it. If `old` is not the key the snapshot was written with, or anything
    fails before the rename, the snapshot is left exactly as it was. Needs the folder's lock, so the
    control plane must be stopped; start it again with `new`. Ciphertext written under `old` before
    (backups, freed disk blocks) stays readable with `old`: rotation protects what is written from now on.
    """
    what = f"metadata store {folder}"
    if old == new:
        raise StoreError(f"key rotation in {what}: the new key is the old key ({old.key_id})")
    if not (folder / SNAPSHOT).exists():
        # Checked before locking, which would create the folder: a mistyped path must not look rotated.
        raise StoreError(f"key rotation in {what}: there is no snapshot to re-encrypt")
    lock_fd = _lock(folder, what)
    try:
        sealed = _read(folder / SNAPSHOT, what)
        if sealed is None:
            raise StoreError(f"key rotation in {what}: there is no snapshot to re-encrypt")
        body = _open_sealed(sealed, old, what)
        _decode_body(body, what)  # refuse to carry a malformed body forward under a new key
        _write_atomically(folder / SNAPSHOT, _seal(body, new), what)
    finally:
        os.close(lock_fd)


# --- sealing ----------------------------------------------------------------------------------------------


def _seal(body: bytes, key: MetadataKey) -> bytes:
    header = _HEADER_V1.pack(MAGIC, FORMAT_VERSION, key.key_id.encode("ascii"), secrets.token_bytes(_NONCE_BYTES))
    nonce = header[-_NONCE_BYTES:]
    return header + AESGCM(key.secret).encrypt(nonce, body, header)


def _open_sealed(sealed: bytes, key: MetadataKey, what: str) -> bytes:
    if len(sealed) < _PREFIX.size or sealed[: len(MAGIC)] != MAGIC:
        raise StoreError(f"{what}: {SNAPSHOT} is not a featureplane metadata snapshot")
    _, version = _PREFIX.unpack_from(sealed)
    check_format_version(version, FORMAT_VERSION, f"{what}: {SNAPSHOT}")
    if len(sealed) < _HEADER_V1.size + _TAG_BYTES:
        raise StoreError(f"{what}: {SNAPSHOT} is truncated ({len(sealed)} bytes)")
    header = sealed[: _HEADER_V1.size]
    _, _, raw_key_id, nonce = _HEADER_V1.unpack(header)
    # The header is only authenticated by the decryption below; until then the key id is a hint, which
    # is why the message allows for a damaged header.
    key_id = raw_key_id.decode("ascii", errors="replace")
    if key_id != key.key_id:
        raise StoreError(f"{what}: {SNAPSHOT} is encrypted with key {key_id}, this process has "
                         f"{key.key_id} (a wrong key, or a damaged header)")
    try:
        return AESGCM(key.secret).decrypt(nonce, sealed[_HEADER_V1.size:], header)
    except InvalidTag as exc:
        raise StoreError(f"{what}: {SNAPSHOT}: authentication failed: it was altered or damaged "
                         f"(key {key.key_id})") from exc


def _applied_rows(applied: AppliedOffsets, what: str) -> list[list[object]]:
    """The rows to store, put through the reader's own check: a snapshot that would not load is not written."""
    try:
        rows: list[list[object]] = applied_to_rows(applied)
    except (TypeError, ValueError) as exc:  # keys that are not (topic, partition) pairs
        raise StoreError(f"{what}: malformed applied offsets: {exc}") from exc
    applied_from_rows(rows)
    return rows


def _decode_body(body: bytes, what: str) -> tuple[bytes, AppliedOffsets]:
    try:
        data = msgpack.unpackb(body)
    except UNPACK_ERRORS as exc:
        raise StoreError(f"{what}: unreadable snapshot body: {exc}") from exc
    if not isinstance(data, dict) or set(data) != {"state", "applied"} or not isinstance(data["state"], bytes):
        raise StoreError(f"{what}: malformed snapshot body")
    return data["state"], applied_from_rows(data["applied"])


# --- files ------------------------------------------------------------------------------------------------


def _read(path: Path, what: str) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"{what}: cannot read {path.name}: {exc.strerror or exc}") from exc


def _lock(folder: Path, what: str) -> int:
    """Create the folder (0700) if needed, lock it exclusively, and drop a temporary a crash left behind."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot open {what}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise StoreError(f"{what} is open by another process (or store)") from exc
    try:
        _temporary(folder / SNAPSHOT).unlink(missing_ok=True)  # ciphertext, but nobody's: tidy it away
    except OSError as exc:
        os.close(fd)
        raise StoreError(f"cannot clean up {what}: {exc.strerror or exc}") from exc
    return fd


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def _write_atomically(path: Path, data: bytes, what: str) -> None:
    """Write to a temporary name (0600), fsync, rename over `path`, fsync the directory."""
    temporary = _temporary(path)
    try:
        # Unlink then O_EXCL: a leftover file keeps its own (perhaps looser) mode through O_TRUNC.
        temporary.unlink(missing_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        fsync_dir(path.parent)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise StoreError(f"{what}: cannot write {path.name}: {exc.strerror or exc}") from exc

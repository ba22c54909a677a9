"""The customer-managed key that encrypts the control plane's metadata store at rest.

A key is 32 random bytes (AES-256-GCM), written as url-safe base64: 44 characters, the same text as a
Fernet key. Its `key_id` (the first 8 hex digits of its SHA-256) names it in snapshot headers, logs and
errors; the key itself is never printed, logged or echoed in an error message, even when it is malformed.

Where a process finds its key (`load_metadata_key`): a key file (mode 0600 or stricter) or an environment
variable. A file is preferred: an environment variable can be read from `/proc/<pid>/environ` by the same
user and shows up in `docker inspect`.

Errors are `StoreError`s, not `InvalidRequest`s: the key is the operator's configuration of this store,
and a bad one means the store cannot open. `InvalidRequest` is what a caller's request gets (the gateway
answers it with HTTP 400), which would blame the wrong party.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from events.errors import StoreError

KEY_BYTES = 32
KEY_TEXT_LENGTH = 44  # url-safe base64 of 32 bytes, with its one "=" of padding
KEY_ID_LENGTH = 8
DEFAULT_KEY_ENV_VAR = "FEATUREPLANE_METADATA_KEY"
_KEY_TEXT = re.compile(r"[A-Za-z0-9_-]{43}=")

# A key file is a line of text; anything much longer is the wrong file, not a key to read to the end.
_MAX_KEY_FILE_BYTES = 4096

__all__ = ["DEFAULT_KEY_ENV_VAR", "KEY_BYTES", "MetadataKey", "load_metadata_key", "write_key_file"]


@dataclass(frozen=True, slots=True, eq=False)
class MetadataKey:
    """An AES-256-GCM key. `repr`/`str` show only its key id."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.secret, bytes) or len(self.secret) != KEY_BYTES:
            size = len(self.secret) if isinstance(self.secret, bytes) else type(self.secret).__name__
            raise StoreError(f"a metadata key is {KEY_BYTES} bytes, got {size}")

    @property
    def key_id(self) -> str:
        """Names the key without revealing it: safe to store in headers and to log."""
        return hashlib.sha256(self.secret).hexdigest()[:KEY_ID_LENGTH]

    @classmethod
    def generate(cls) -> MetadataKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_text(cls, text: str) -> MetadataKey:
        """Url-safe base64 of 32 bytes (44 characters); surrounding whitespace is ignored."""
        return _parse(text, "metadata key text")

    @classmethod
    def from_file(cls, path: Path) -> MetadataKey:
        """Read a key file, refusing one that group or others may read (as ssh does with private keys)."""
        return _parse(_read_key_file(path), f"key file {path}")

    @classmethod
    def from_env(cls, var: str = DEFAULT_KEY_ENV_VAR) -> MetadataKey:
        text = os.environ.get(var)
        if text is None or not text.strip():
            raise StoreError(f"environment variable {var} is {'empty' if text is not None else 'not set'}: "
                             "it should hold a metadata key")
        return _parse(text, f"environment variable {var}")

    def to_text(self) -> str:
        """The key as text, for a key file or a secret manager: the only way the secret leaves this object."""
        return base64.urlsafe_b64encode(self.secret).decode("ascii")

    def __repr__(self) -> str:
        return f"MetadataKey(key_id={self.key_id!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MetadataKey):
            return NotImplemented
        return hmac.compare_digest(self.secret, other.secret)

    def __hash__(self) -> int:
        return hash(self.key_id)


def _parse(text: str, source: str) -> MetadataKey:
    # The messages say what is wrong with the text, never what the text is: it may be a real key, mistyped.
    if not isinstance(text, str):
        raise StoreError(f"{source}: a metadata key is text, got {type(text).__name__}")
    text = text.strip()
    if len(text) != KEY_TEXT_LENGTH:
        raise StoreError(f"{source}: a metadata key is {KEY_TEXT_LENGTH} characters of url-safe base64, "
                         f"got {len(text)} characters")
    # Checked before decoding: the decoder would accept the standard alphabet's '+' and '/' too.
    if not _KEY_TEXT.fullmatch(text):
        raise StoreError(f"{source}: not url-safe base64 of {KEY_BYTES} bytes "
                         "(43 letters, digits, '-' or '_', then '=')")
    secret = base64.urlsafe_b64decode(text)
    # Decoding ignores the unused low bits of the last character; comparing the re-encoding refuses text
    # that is not exactly what `to_text` writes, so one key has one spelling.
    if base64.urlsafe_b64encode(secret).decode("ascii") != text:
        raise StoreError(f"{source}: not the canonical url-safe base64 of {KEY_BYTES} bytes "
                         "(its last character before '=' has bits set that encode nothing)")
    return MetadataKey(secret)


def _read_key_file(path: Path) -> str:
    try:
        # fstat on the opened file, not stat on the path: the file checked is the file read. Symlinks are
        # followed on purpose: Kubernetes mounts secrets as symlinks.
        with open(path, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise StoreError(f"key file {path} is not a regular file")
            if mode & 0o077:
                raise StoreError(f"key file {path} has mode {stat.S_IMODE(mode):04o}, readable beyond its "
                                 f"owner: run `chmod 600 {path}` (and consider the key exposed)")
            raw = file.read(_MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise StoreError(f"cannot read key file {path}: {exc.strerror or exc}") from exc
    if len(raw) > _MAX_KEY_FILE_BYTES:
        raise StoreError(f"key file {path} is larger than {_MAX_KEY_FILE_BYTES} bytes: not a metadata key")
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise StoreError(f"key file {path}: not url-safe base64 text") from exc


def write_key_file(path: Path, key: MetadataKey) -> None:
    """Create `path` holding `key`, mode 0600 from its first instant; never replace an existing file.

    The text goes to a temporary file created 0600 with O_EXCL, is fsynced, then hard-linked to `path`:
    linking is atomic and fails if `path` exists, so a crash leaves no half-written key file and an
    existing key (perhaps the only copy of the key to some snapshot) is never overwritten.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(key.to_text().encode("ascii") + b"\n")
                file.flush()
                os.fsync(file.fileno())
            os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        _fsync_dir(path.parent)
    except FileExistsError as exc:
        raise StoreError(f"key file {path} already exists; refusing to overwrite a key") from exc
    except OSError as exc:
        raise StoreError(f"cannot write key file {path}: {exc.strerror or exc}") from exc


def load_metadata_key(file: Path | None, env_var: str = DEFAULT_KEY_ENV_VAR) -> MetadataKey:
    """The key from `file` and/or the environment variable `env_var` (unset or blank counts as absent).

    Neither wins over the other: when both are given they must hold the same key, or this raises naming
    both key ids. A stale variable left in a shell, or a forgotten file, silently winning would make the
    first snapshot after start-up encrypted under a key the operator did not mean to use.
    """
    from_env = MetadataKey.from_env(env_var) if os.environ.get(env_var, "").strip() else None
    from_file = MetadataKey.from_file(file) if file is not None else None
    if from_env is not None and from_file is not None:
        if from_env != from_file:
            raise StoreError(f"two different metadata keys: key {from_file.key_id} in {file} and key "
                             f"{from_env.key_id} in {env_var}; give one, or make them the same")
        return from_file
    key = from_file or from_env
    if key is None:
        raise StoreError(f"no metadata key: give a key file (mode 0600) or set {env_var}; "
                         "a new key can be made with MetadataKey.generate() and write_key_file()")
    return key


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

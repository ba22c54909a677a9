"""LMDB environments for the stores: opening, sub-databases, the format-version stamp, error mapping."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import lmdb

from events.data import Coordinates
from events.errors import StoreError
from stores.offsets import (
    APPLIED_OFFSETS_KEY,
    FORMAT_VERSION_KEY,
    check_format_version,
    decode_applied,
    decode_version,
    encode_applied,
    encode_version,
    split_applied,
)

T = TypeVar("T")


def open_lmdb_env(path: Path, *, map_size: int, readonly: bool, what: str, sync: bool = True) -> lmdb.Environment:
    """`sync=False`: a commit is not flushed to disk (no fsync); it is in the OS page cache, so it survives
    the process being killed, not the machine losing power."""
    try:
        if not readonly:
            path.mkdir(parents=True, exist_ok=True)
        return lmdb.open(str(path), map_size=map_size, readonly=readonly, create=not readonly, max_dbs=4,
                         sync=sync)
    except (lmdb.Error, OSError) as exc:
        # Among the causes: LMDB refuses to open one environment twice in a process, because its locks
        # belong to the process; a reader in the writer's process must use the writer's store.
        raise StoreError(f"cannot open {what}: {exc}") from exc


@contextmanager
def applying(env: lmdb.Environment, meta_db: lmdb._Database, items: Sequence[T],
             coordinates_of: Callable[[T], Coordinates], *, readonly: bool,
             what: str) -> Iterator[tuple[Any, list[T]]]:
    """A write transaction for the items not applied yet; their offsets are stored in it when it ends.

    The applied offsets are read inside the transaction, which LMDB serialises, so two writers can never
    both apply the same message.
    """
    if readonly:
        raise StoreError(f"{what} is open read-only")
    with lmdb_errors(what), env.begin(write=True) as txn:
        applied = decode_applied(txn.get(APPLIED_OFFSETS_KEY, db=meta_db))
        to_apply, next_offsets = split_applied(items, applied, coordinates_of)
        yield txn, to_apply
        if to_apply:
            txn.put(APPLIED_OFFSETS_KEY, encode_applied(next_offsets), db=meta_db)


def open_store_env(path: Path, names: Sequence[bytes], *, data_db: bytes, map_size: int, readonly: bool,
                   supported: int, what: str, sync: bool = True,
                   ) -> tuple[lmdb.Environment, dict[bytes, lmdb._Database]]:
    """Open a store's environment and sub-databases and check its format version; closes it on failure."""
    env = open_lmdb_env(path, map_size=map_size, readonly=readonly, what=what, sync=sync)
    try:
        dbs = dict(zip(names, open_lmdb_dbs(env, names, readonly=readonly, what=what), strict=True))
        check_lmdb_meta(env, dbs[b"meta"], dbs[data_db], readonly=readonly, supported=supported, what=what)
    except BaseException:
        env.close()
        raise
    return env, dbs


def open_lmdb_dbs(
    env: lmdb.Environment, names: Sequence[bytes], *, readonly: bool, what: str
) -> list[lmdb._Database]:
    try:
        return [env.open_db(name, create=not readonly) for name in names]
    except lmdb.NotFoundError as exc:
        raise StoreError(f"{what} is not initialised (never opened for writing)") from exc
    except lmdb.Error as exc:
        raise StoreError(f"cannot open the sub-databases of {what}: {exc}") from exc


def check_lmdb_meta(
    env: lmdb.Environment,
    meta_db: lmdb._Database,
    data_db: lmdb._Database,
    *,
    readonly: bool,
    supported: int,
    what: str,
) -> None:
    """Check the format version in `meta`; a writer stamps it on a new, empty store."""
    with lmdb_errors(what), env.begin(write=not readonly) as txn:
        raw = txn.get(FORMAT_VERSION_KEY, db=meta_db)
        if raw is not None:
            check_format_version(decode_version(raw), supported, what)
        elif readonly or txn.stat(data_db)["entries"]:
            raise StoreError(f"{what} has no format version")
        else:
            txn.put(FORMAT_VERSION_KEY, encode_version(supported), db=meta_db)


@contextmanager
def lmdb_errors(what: str) -> Iterator[None]:
    """LMDB's exceptions as StoreError: callers outside `stores` cannot import lmdb to catch them."""
    try:
        yield
    except lmdb.MapFullError as exc:
        raise StoreError(f"{what} is full; open it with a larger map_size") from exc
    except lmdb.Error as exc:
        raise StoreError(f"{what} failed: {exc}") from exc

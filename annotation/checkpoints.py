"""Where reward-model checkpoints live: a local folder, or any Django storage.

By default a checkpoint is a folder under ``PREFLOOP_CHECKPOINT_DIR``
(safetensors + config.json), published by an atomic rename of its staging
folder. A deployment whose workers and web servers run on different hosts
configures a storage named ``checkpoints`` in ``STORAGES`` instead (the
settings do so for ``PREFLOOP_STORAGE=s3``: django-storages' S3 back end,
which also speaks to MinIO, Ceph and other S3-compatible stores). A
worker then uploads each file of the checkpoint under ``study-<id>/<random>/``
before the version's row is written, so readers never see half a checkpoint, and any host that needs the weights (a
refill, a download) fetches them once into a local cache keyed by that name,
which is never reused for other contents.

``RewardModelVersion.checkpoint_path`` holds the reference: an absolute
folder path for the local layout, ``checkpoints:<name>`` for a storage. Both
kinds can coexist in one study (a deployment that moved to object storage
keeps its older local checkpoints readable where the folder is still mounted).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage, storages

STORAGE_ALIAS = "checkpoints"
SCHEME = f"{STORAGE_ALIAS}:"


class CheckpointMissing(FileNotFoundError):
    """The reference names no checkpoint this host can read (gone, outside the
    checkpoint folder, or in a storage this host does not configure)."""


def object_storage() -> Storage | None:
    """The configured ``checkpoints`` storage, or None for the local folder."""
    if STORAGE_ALIAS not in settings.STORAGES:
        return None
    return storages[STORAGE_ALIAS]


def _root() -> Path:
    return Path(settings.PREFLOOP_CHECKPOINT_DIR).resolve()


@dataclass(frozen=True)
class Staged:
    """A checkpoint saved but not yet published: a local folder awaiting its
    rename, or files already uploaded to the storage under ``reference``."""

    folder: Path | None = None
    reference: str | None = None


def stage(*, study_id: int, save: Callable[[Path], None]) -> Staged:
    """Save a checkpoint with ``save(folder)`` ahead of publishing it.

    Called before the fit takes the study's lock, so answers never wait on the
    disk or the network: locally the folder sits beside the study's checkpoints
    (publishing is then a rename); with a storage, every file is uploaded here
    under a random name, and publishing only hands out its reference."""
    store = object_storage()
    parent = (
        Path(settings.PREFLOOP_CHECKPOINT_DIR) / f"study-{study_id}"
        if store is None
        else Path(settings.PREFLOOP_VAR_DIR) / "checkpoint-staging"
    )
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=".staging-", dir=parent))
    if store is None:
        try:
            save(folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return Staged(folder=folder)
    reference = f"{SCHEME}study-{study_id}/{uuid.uuid4().hex}"
    name = reference.removeprefix(SCHEME)
    try:
        save(folder)
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            with path.open("rb") as fileobj:
                saved = store.save(f"{name}/{path.name}", File(fileobj, name=path.name))
            if saved != f"{name}/{path.name}":
                raise RuntimeError(f"the checkpoint storage renamed {name}/{path.name} to {saved}")
    except BaseException:
        delete(reference)  # whatever was uploaded before the failure
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return Staged(reference=reference)


def publish(staged: Staged, *, study_id: int, version: int) -> str:
    """The staged checkpoint under its version; the reference to store in the row.

    Locally an atomic rename to ``study-<id>/v<version>-<random>`` (the random
    suffix keeps a recreated database, whose ids start again, from colliding
    with an earlier one's checkpoints); a storage's upload is already complete."""
    if staged.reference is not None:
        return staged.reference
    final = Path(settings.PREFLOOP_CHECKPOINT_DIR) / f"study-{study_id}" / f"v{version:05d}-{uuid.uuid4().hex[:8]}"
    os.replace(staged.folder, final)
    return str(final)


def discard(staged: Staged) -> None:
    """Remove a staged checkpoint that will not be published."""
    if staged.reference is not None:
        delete(staged.reference)
    if staged.folder is not None:
        shutil.rmtree(staged.folder, ignore_errors=True)


def local_folder(reference: str) -> Path:
    """A folder on this host holding the checkpoint ``reference`` names.

    Local references must lie inside ``PREFLOOP_CHECKPOINT_DIR`` (the path is
    data: it must not become a way to read other folders). A storage's
    checkpoint is downloaded once into ``<PREFLOOP_VAR_DIR>/checkpoint-cache``;
    the download goes to a temporary folder renamed into place, so concurrent
    readers never see a partial copy."""
    if not reference.startswith(SCHEME):
        folder = Path(reference).resolve()
        if not folder.is_relative_to(_root()) or folder == _root():
            raise CheckpointMissing(f"{reference} is not in the checkpoint folder {_root()}")
        if not folder.is_dir():
            raise CheckpointMissing(f"{reference} is no longer on disk")
        return folder
    name = _storage_name(reference)
    cache = Path(settings.PREFLOOP_VAR_DIR) / "checkpoint-cache"
    final = cache / name
    if final.is_dir():
        return final
    store = _store_for(reference)
    _, files = store.listdir(name)
    if not files:
        raise CheckpointMissing(f"{reference} holds no files in the checkpoint storage")
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".download-", dir=final.parent))
    try:
        for filename in files:
            with store.open(f"{name}/{filename}", "rb") as source, (partial / filename).open("wb") as target:
                shutil.copyfileobj(source, target, length=1 << 20)
        try:
            os.replace(partial, final)
        except OSError:
            if not final.is_dir():  # another reader's copy got there first otherwise
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return final


def delete(reference: str) -> bool:
    """Delete the checkpoint (and this host's cached copy); False when the
    reference lies outside what this host may delete."""
    if not reference.startswith(SCHEME):
        folder = Path(reference).resolve()
        if not folder.is_relative_to(_root()) or folder == _root():
            return False
        shutil.rmtree(folder, ignore_errors=True)
        return True
    name = _storage_name(reference)
    store = _store_for(reference)
    try:
        _, files = store.listdir(name)
    except FileNotFoundError:
        files = []
    for filename in files:
        store.delete(f"{name}/{filename}")
    shutil.rmtree(Path(settings.PREFLOOP_VAR_DIR) / "checkpoint-cache" / name, ignore_errors=True)
    return True


def _storage_name(reference: str) -> str:
    name = reference.removeprefix(SCHEME)
    parts = Path(name).parts
    if len(parts) != 2 or not parts[0].startswith("study-") or any(p in (".", "..") for p in parts):
        raise CheckpointMissing(f"{reference} is not a checkpoint name")
    return name


def _store_for(reference: str) -> Storage:
    store = object_storage()
    if store is None:
        raise CheckpointMissing(
            f"{reference} lives in the '{STORAGE_ALIAS}' storage, which this host does not configure (PREFLOOP_STORAGE)"
        )
    return store

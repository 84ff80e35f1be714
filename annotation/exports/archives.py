"""Zip archives streamed a block at a time, and the reward-model checkpoint archive."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from annotation import checkpoints
from annotation.exports.errors import ExportError
from annotation.models import RewardModelVersion

FILE_BLOCK = 1 << 20


class Sink:
    """A write-only file that keeps what was written until it is drained, so a
    zip archive or a parquet file can be produced block by block without a
    seekable file."""

    closed = False  # pyarrow checks it before writing

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        """What was written since the last drain."""
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class CleanedUpStream:
    """An iterator of blocks that runs ``cleanup`` when Django closes the
    response: after the last block, or when the client went away mid-download
    (a generator's ``finally`` would not run if it never started)."""

    def __init__(self, blocks: Iterator[bytes], cleanup: Callable[[], None]) -> None:
        self._blocks = blocks
        self._cleanup = cleanup

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self._blocks)

    def close(self) -> None:
        close = getattr(self._blocks, "close", None)
        if close is not None:
            close()
        self._cleanup()


def zip_folder_stream(folder: Path, *, root: str) -> Iterator[bytes]:
    """The files under ``folder`` as a zip archive (entries under ``root/``),
    streamed a block at a time: memory holds one block, never the archive.

    Symbolic links are left out, so an archive never reaches outside the folder.
    """
    folder = Path(folder)
    sink = Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for base, dirs, files in os.walk(folder, followlinks=False):
            dirs.sort()
            for name in sorted(files):
                path = Path(base) / name
                if path.is_symlink() or not path.is_file():
                    continue
                arcname = f"{root}/{path.relative_to(folder).as_posix()}"
                with path.open("rb") as src, archive.open(arcname, "w", force_zip64=True) as dst:
                    while block := src.read(FILE_BLOCK):
                        dst.write(block)
                        if data := sink.drain():
                            yield data
                if data := sink.drain():
                    yield data
    if data := sink.drain():  # the central directory, written on close
        yield data


def checkpoint_archive(*, version: RewardModelVersion) -> Iterator[bytes]:
    """A reward-model version's checkpoint folder (safetensors + config.json) as
    a streamed zip, entries under ``model-v<version>/``.

    Checked before anything streams: ExportError when the folder is gone or
    lies outside ``PREFLOOP_CHECKPOINT_DIR`` (the path is data, and a download
    must not become a way to read other folders of the server).
    """
    if version.pruned_at is not None:
        raise ExportError(
            f"The checkpoint of version {version.version} was pruned on {version.pruned_at:%Y-%m-%d %H:%M} UTC: "
            "a study keeps the live version, the best by held-out log-loss and the newest few."
        )
    try:
        # A checkpoint in object storage is fetched to this host's cache first.
        folder = checkpoints.local_folder(version.checkpoint_path)
    except checkpoints.CheckpointMissing as exc:
        raise ExportError(f"The checkpoint of version {version.version} cannot be read: {exc}.") from exc
    return zip_folder_stream(folder, root=f"model-v{version.version}")

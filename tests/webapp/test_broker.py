"""The no-server broker writes each message whole (webapp/broker.py)."""

import os
import queue

import pytest
from kombu import Connection

from webapp import broker


@pytest.fixture
def channel(tmp_path):
    folder = tmp_path / "broker"
    (folder / "processed").mkdir(parents=True)
    options = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "processed_folder": str(folder / "processed"),
        "store_processed": False,
    }
    with Connection("filesystem://", transport_options=options) as conn:
        yield conn.default_channel, folder


def test_filesystem_urls_use_the_atomic_transport():
    with Connection("filesystem://") as conn:
        assert isinstance(conn.transport, broker.Transport)


def test_a_polling_reader_never_sees_a_message_being_written(channel, monkeypatch):
    """While the message is on disk but not yet renamed into place, a reader of
    its queue finds nothing (kombu's own transport would hand it the empty file);
    after the rename it gets the whole message."""
    chan, folder = channel
    seen_mid_write = {}
    real_replace = os.replace

    def replace(src, dst):
        seen_mid_write["files"] = sorted(p.name for p in folder.iterdir() if p.is_file())
        with pytest.raises(queue.Empty):
            chan._get("default")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    chan._put("default", {"body": "x" * 10_000})

    assert len(seen_mid_write["files"]) == 1 and seen_mid_write["files"][0].endswith(".default.msg.part")
    assert chan._get("default") == {"body": "x" * 10_000}
    assert not [p for p in folder.iterdir() if p.is_file()]

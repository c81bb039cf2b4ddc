"""Milvus Lite inside this process, reachable only by this server.

pymilvus would start Milvus Lite for a `.db` path itself, listening on a 127.0.0.1 TCP port without
credentials, so any local process could read or drop collections. Here the same Milvus Lite service
listens on a unix socket in a folder only this server's user may enter (mode 0700), and the store's
client connects to that socket.

Before serving, the data folder is checked: leftovers of an interrupted create or drop are removed and
collections whose manifest is corrupt are named, so the store can refuse them instead of serving the
older state Milvus Lite would fall back to.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from concurrent import futures
from pathlib import Path

from server.errors import Unavailable
from server.retrieval import lite_files

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # what Milvus Lite itself accepts
WORKERS = 8


def is_lite_uri(uri: str) -> bool:
    """pymilvus's own rule: a URI ending in `.db` is a Milvus Lite file."""
    return uri.endswith(".db")


def servicer(db):
    """Milvus Lite's service, plus the timestamp call pymilvus makes while waiting for an index to build
    (Milvus Lite builds it at once; unanswered, each creation logs three tracebacks)."""
    from milvus_lite.adapter.grpc.servicer import MilvusServicer
    from pymilvus.grpc_gen import common_pb2, milvus_pb2

    class Servicer(MilvusServicer):
        def AllocTimestamp(self, request, context):
            hybrid = int(time.time() * 1000) << 18  # Milvus's hybrid timestamp: milliseconds, 18 logical bits
            return milvus_pb2.AllocTimestampResponse(status=common_pb2.Status(), timestamp=hybrid)

    return Servicer(db)


class LiteServer:
    """Opens the data folder (taking its lock), checks it, and serves it on a private unix socket."""

    def __init__(self, data_dir: Path) -> None:
        import grpc
        from milvus_lite.db import MilvusLite
        from milvus_lite.exceptions import DataDirLockedError
        from pymilvus.grpc_gen import milvus_pb2_grpc

        self.data_dir = Path(data_dir)
        if not self.data_dir.parent.is_dir():
            raise Unavailable(f"vector store: folder {self.data_dir.parent} does not exist")
        try:
            self._db = MilvusLite(str(self.data_dir))  # collections open lazily: checking files is safe
        except DataDirLockedError as error:
            raise Unavailable(
                f"vector store {self.data_dir} is in use by another process: {error}"
            ) from error
        self._folder = Path(tempfile.mkdtemp(prefix="crossmodal-milvus-"))  # 0700, short enough for a socket
        self._server = None
        try:
            lite_files.remove_unfinished(self.data_dir)
            self.corrupt = lite_files.corrupt_collections(self.data_dir)
            self._server = grpc.server(
                futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="milvus-lite"),
                options=[
                    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ],
            )
            milvus_pb2_grpc.add_MilvusServiceServicer_to_server(servicer(self._db), self._server)
            self._server.add_insecure_port(self.uri)
            self._server.start()
        except BaseException:
            self.close()
            raise
        log.info("Milvus Lite on %s, served on %s", self.data_dir, self.socket)

    @property
    def socket(self) -> Path:
        return self._folder / "milvus.sock"

    @property
    def uri(self) -> str:
        return f"unix:{self.socket}"

    def remove_unfinished(self, name: str) -> None:
        lite_files.remove_unfinished(self.data_dir, name)

    def close(self) -> None:
        if self._server is not None:
            self._server.stop(grace=2).wait(5)
            self._server = None
        self._db.close()  # flushes what is in memory and releases the folder's lock
        shutil.rmtree(self._folder, ignore_errors=True)

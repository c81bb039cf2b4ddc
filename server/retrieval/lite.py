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

import hashlib
import logging
import os
import stat
import tempfile
import time
from concurrent import futures
from pathlib import Path

from server.core.errors import Unavailable
from server.retrieval import lite_files

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # what Milvus Lite itself accepts
WORKERS = 8


def is_lite_uri(uri: str) -> bool:
    """pymilvus's own rule: a URI ending in `.db` is a Milvus Lite file."""
    return uri.endswith(".db")


def private_folder() -> Path:
    """The folder of this user's store sockets: short enough for a socket path, entered by no one else.
    Refused when someone else made it first (or made it a link), so no one can stand in for the store."""
    folder = Path(tempfile.gettempdir()) / f"crossmodal-milvus-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.lstat()
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise Unavailable(f"vector store: {folder} must be a folder of this user with mode 0700")
    return folder


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
        self._server = None
        self.socket: Path | None = None
        try:
            self.socket = (
                private_folder() / f"{hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:16]}.sock"
            )
            self.socket.unlink(missing_ok=True)  # a killed run's: the folder's lock says none serves it now
            lite_files.remove_unfinished(self.data_dir)
            self.corrupt = lite_files.corrupt_collections(self.data_dir)
            self._server = grpc.server(
                futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="milvus-lite"),
                options=[
                    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                    # pymilvus pings every 10 s, idle or not; without these the server answers GOAWAY
                    # "too_many_pings" and gRPC logs an error line.
                    ("grpc.keepalive_permit_without_calls", 1),
                    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
                    ("grpc.http2.max_ping_strikes", 0),
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
    def uri(self) -> str:
        return f"unix:{self.socket}"

    def remove_unfinished(self, name: str) -> None:
        lite_files.remove_unfinished(self.data_dir, name)

    def discard_refused(self, name: str) -> None:
        lite_files.discard_refused(self.data_dir, name)

    def close(self) -> None:
        if self._server is not None:
            self._server.stop(grace=1).wait(2)  # calls reach it only from retrieval calls, drained by now
            self._server = None
        self._db.close()  # flushes what is in memory and releases the folder's lock
        if self.socket is not None:
            self.socket.unlink(missing_ok=True)

"""The retrieval subcommands of `crossmodal`: index, search, collections and delete."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import grpc

from crossmodal.indexing import (
    DEFAULT_BATCH_SIZE,
    IMAGE_EXTENSIONS,
    Entry,
    IndexSummary,
    ItemFailure,
    caption_entries,
    image_entries,
    index_in_batches,
    parse_extensions,
)
from crossmodal.report import collections_report, index_report, proto_json, search_report

COMMANDS = ("index", "search", "collections", "delete")

INDEX_EPILOG = """\
Ids are the image paths relative to DIR ('/'-separated) and caption:<line number> for captions; each
image gets the metadata path and bytes. Items already in the collection are skipped by the server, so
running the same command again resumes an interrupted run and adds only new files. An item that cannot be
indexed (a corrupt image, an unreadable file) is reported on stderr with its id and reason and the rest
is indexed; the exit status is 1 only when a call fails as a whole (server unreachable, bad collection).
"""


def add_commands(commands, common: Callable[..., None]) -> None:
    """Adds the subcommands to the `crossmodal` parser; `common(parser, model=...)` adds the shared flags."""
    _index_parser(commands, common)
    _search_parser(commands, common)
    collections = commands.add_parser(
        "collections", help="list the collections: size, pipeline, version, dimension"
    )
    common(collections, model=False)
    delete = commands.add_parser(
        "delete",
        help="remove items by id, or a whole collection",
        description="Removes the items with the given ids from a collection, or with --drop the collection.",
    )
    delete.add_argument("--collection", required=True, help="collection name")
    delete.add_argument(
        "--id", dest="ids", action="extend", nargs="+", default=[], metavar="ID", help="item ids to remove"
    )
    delete.add_argument("--drop", action="store_true", help="remove the whole collection (give no --id)")
    common(delete, model=False)


def _index_parser(commands, common) -> None:
    index = commands.add_parser(
        "index",
        help="add a folder of images (and a caption file) to a collection, resumably",
        description="Walks DIR recursively (in sorted order) for images and adds them to the collection, "
        "in batches.",
        epilog=INDEX_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    index.add_argument("directory", nargs="?", type=Path, metavar="DIR", help="folder of images")
    index.add_argument(
        "--collection", required=True, help="collection name (letters, digits, '_'); created on first use"
    )
    index.add_argument(
        "--batch-size", type=_positive, default=DEFAULT_BATCH_SIZE, help="items per Index call (default 32)"
    )
    index.add_argument(
        "--extensions",
        type=_extensions,
        default=IMAGE_EXTENSIONS,
        help=f"image file extensions, comma-separated, any case (default: {','.join(IMAGE_EXTENSIONS)})",
    )
    index.add_argument(
        "--captions",
        type=Path,
        metavar="FILE",
        help="UTF-8 text file whose non-blank lines are indexed as texts, with ids caption:<line number>",
    )
    index.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (none is drawn when stderr is not a terminal)",
    )
    common(index)


def _search_parser(commands, common) -> None:
    search = commands.add_parser(
        "search",
        help="the items of a collection nearest to a text or an image",
        description="The items of a collection nearest to a text query (Chinese is segmented and translated "
        "first, and the report shows how) or, with --image, to an image.",
    )
    search.add_argument("query", nargs="?", metavar="TEXT", help="text query, e.g. 雪地里的狗 or 'a dog'")
    search.add_argument("--image", type=Path, metavar="PATH", help="search with this image instead of a text")
    search.add_argument("--collection", required=True, help="collection name")
    search.add_argument("--top-k", type=_positive, default=10, help="hits to return (default 10)")
    search.add_argument(
        "--modality", choices=("image", "text"), default="", help="only hits of this kind (default: both)"
    )
    common(search)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _extensions(value: str) -> tuple[str, ...]:
    try:
        return parse_extensions(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def run(args: argparse.Namespace, client) -> str:
    if args.command == "index":
        return _index(args, client)
    if args.command == "search":
        return _search(args, client)
    if args.command == "collections":
        response = client.list_collections()
        return proto_json(response) if args.json else collections_report(response)
    return _delete(args, client)


def _index(args: argparse.Namespace, client) -> str:
    entries = _entries(args)
    summary = IndexSummary(total=len(entries))
    bar = _progress_bar(len(entries), args.collection, not args.no_progress and sys.stderr.isatty())
    try:
        for count, failures in index_in_batches(
            client, args.collection, entries, summary, args.batch_size, args.model, args.version
        ):
            for failure in failures:
                _say(bar, _failure_line(failure))
            if bar is not None:
                bar.update(count)
                bar.set_postfix_str(
                    f"indexed {summary.indexed}, skipped {summary.skipped}, failed {len(summary.failures)}"
                )
    except grpc.RpcError:
        _close(bar)
        if summary.done:
            print(
                f"crossmodal index: stopped after {summary.done} of {summary.total} items "
                f"(indexed {summary.indexed}); run the same command again to resume",
                file=sys.stderr,
            )
        raise
    _close(bar)
    totals = summary.as_dict(args.collection)
    return json.dumps(totals, indent=2, ensure_ascii=False) if args.json else index_report(totals)


def _entries(args: argparse.Namespace) -> list[Entry]:
    if args.directory is None and args.captions is None:
        raise SystemExit("crossmodal index: give a folder of images (DIR), --captions FILE, or both")
    entries = []
    if args.directory is not None:
        if not args.directory.is_dir():
            raise SystemExit(f"crossmodal index: {args.directory} is not a directory")
        entries += image_entries(args.directory, args.extensions)
    if args.captions is not None:
        try:
            entries += caption_entries(args.captions)
        except (OSError, UnicodeDecodeError) as error:
            raise SystemExit(f"crossmodal index: cannot read captions {args.captions}: {error}") from error
    if not entries:
        kinds = ",".join(args.extensions)
        raise SystemExit(f"crossmodal index: nothing to index (no {kinds} files, no caption lines)")
    return entries


def _progress_bar(total: int, collection: str, wanted: bool):
    """A tqdm bar on stderr; None when not wanted, or when tqdm (optional for the client) is missing."""
    if not wanted:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="item", desc=f"indexing into {collection}", file=sys.stderr)


def _say(bar, line: str) -> None:
    """A line on stderr, above the bar when there is one (so the bar is not torn)."""
    if bar is None:
        print(line, file=sys.stderr)
    else:
        bar.write(line, file=sys.stderr)


def _close(bar) -> None:
    if bar is not None:
        bar.close()


def _failure_line(failure: ItemFailure) -> str:
    return f"crossmodal index: {failure.id}: {failure.code}: {failure.message}"


def _search(args: argparse.Namespace, client) -> str:
    if (args.query is None) == (args.image is None):
        raise SystemExit("crossmodal search: give a text query or --image PATH (one of them)")
    if args.image is not None:
        try:
            query, description = args.image.read_bytes(), f"image {args.image}"
        except OSError as error:
            reason = f"cannot read image {args.image}: {error.strerror}"
            raise SystemExit(f"crossmodal search: {reason}") from error
    else:
        query, description = args.query, f'text "{args.query}"'
    response = client.search(args.collection, query, args.top_k, args.modality, args.model, args.version)
    return proto_json(response) if args.json else search_report(response, description)


def _delete(args: argparse.Namespace, client) -> str:
    if args.drop == bool(args.ids):
        raise SystemExit("crossmodal delete: give --id ID ... to remove items, or --drop (not both)")
    response = client.delete(args.collection, args.ids, drop_collection=args.drop)
    if args.json:
        return proto_json(response)
    if args.drop:
        return f"dropped collection {args.collection} ({response.deleted} items)"
    return f"deleted {response.deleted} of {len(args.ids)} ids from {args.collection}"

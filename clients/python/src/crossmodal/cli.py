"""`crossmodal` command line: encode, compare, classify, translate, model control and retrieval (index,
search, collections, delete) against a server.

Each subcommand prints a readable report, or with --json the response as protobuf JSON (proto field names).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc

from crossmodal import retrieval_commands
from crossmodal.client import CrossModalClient, Security, image_item, text_item
from crossmodal.report import classify_report, compare_report, encode_report, proto_json, translate_report

TOKEN_ENV = "CROSSMODAL_AUTH_TOKEN"


def _common(parser: argparse.ArgumentParser, model: bool = True) -> None:
    """The flags every subcommand takes; --model/--version only where a pipeline is chosen."""
    parser.add_argument("--server", default="127.0.0.1:8001", help="server address host:port")
    if model:
        parser.add_argument("--model", default="", help="pipeline name (empty: the server's default)")
        parser.add_argument("--version", type=int, default=0, help="model version (0: newest ready)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before the call is abandoned")
    parser.add_argument("--json", action="store_true", help="print the response as JSON (proto field names)")
    add_security_arguments(parser)


def add_security_arguments(parser: argparse.ArgumentParser) -> None:
    """--tls, --tls-ca, --tls-cert, --tls-key, --token-file; `security(args)` turns them into a Security."""
    secure = parser.add_argument_group("security (for servers started with TLS or a token)")
    secure.add_argument("--tls", action="store_true", help="use TLS with the system's trusted CAs")
    secure.add_argument(
        "--tls-ca", type=Path, help="PEM CA that signed the server certificate (implies --tls)"
    )
    secure.add_argument("--tls-cert", type=Path, help="client certificate (PEM), for mTLS")
    secure.add_argument("--tls-key", type=Path, help="client private key (PEM), for mTLS")
    secure.add_argument(
        "--token-file", type=Path, help=f"file with the bearer token (default: ${TOKEN_ENV} when set)"
    )


def security(args: argparse.Namespace) -> Security:
    def read(path: Path | None) -> bytes | None:
        return path.read_bytes() if path else None

    token = (
        args.token_file.read_text(encoding="utf-8").strip() if args.token_file else os.environ.get(TOKEN_ENV)
    )
    return Security(
        token=token or None,
        tls=args.tls,
        root_certificates=read(args.tls_ca),
        private_key=read(args.tls_key),
        certificate_chain=read(args.tls_cert),
    )


def _items(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--image",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help=f"image file {what} (repeatable)",
    )
    parser.add_argument(
        "--text", action="append", default=[], metavar="STR", help=f"text {what} (repeatable)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crossmodal", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    encode = commands.add_parser(
        "encode",
        help="embeddings of images and texts",
        description="Embeddings of images and texts, images first then texts.",
    )
    _items(encode, "to embed")
    _common(encode)

    compare = commands.add_parser(
        "compare",
        help="similarity of queries against candidates",
        description="Cosine similarity and per-query softmax. Queries are --query-image/--query-text when "
        "given; otherwise the images are queries and the texts candidates (or, with only one kind, "
        "every item against every item).",
    )
    _items(compare, "candidate")
    compare.add_argument(
        "--query-image",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="image file query (repeatable)",
    )
    compare.add_argument(
        "--query-text", action="append", default=[], metavar="STR", help="text query (repeatable)"
    )
    _common(compare)

    classify = commands.add_parser(
        "classify",
        help="zero-shot classification against labels",
        description="Zero-shot classification of each image/text against the labels.",
    )
    _items(classify, "to classify")
    classify.add_argument(
        "--label",
        action="append",
        default=[],
        required=True,
        metavar="STR",
        help="candidate label (repeatable)",
    )
    classify.add_argument("--prompt-template", default="", help='e.g. "a photo of {}"; {} is the label')
    classify.add_argument("--top-k", type=int, default=0, help="labels to report per item (0: all)")
    _common(classify)

    translate = commands.add_parser(
        "translate",
        help="Chinese -> English n-best translation",
        description="The jieba words and the n-best English translations of each text, as the server feeds "
        "Chinese texts to CLIP.",
    )
    translate.add_argument(
        "--text",
        action="append",
        default=[],
        required=True,
        metavar="STR",
        help="text to translate (repeatable)",
    )
    translate.add_argument("--num-beams", type=int, default=0, help="beam size (0: model default)")
    translate.add_argument("--num-hypotheses", type=int, default=0, help="n-best size (0: 5)")
    translate.add_argument(
        "--max-length",
        type=int,
        default=0,
        help="decoder length including the start token (0: model default)",
    )
    translate.add_argument(
        "--length-penalty", type=float, default=0.0, help="length penalty (0: model default)"
    )
    _common(translate)
    models = commands.add_parser(
        "models", help="list the repository: every model and pipeline, each version with its state"
    )
    _common(models)
    models.add_argument("--ready", action="store_true", help="only versions that serve now")
    for verb, meaning in (
        ("load", "load (or reload) a model folder; the server must run with --model-control-mode explicit"),
        ("unload", "unload a model after its in-flight calls (explicit mode)"),
    ):
        command = commands.add_parser(verb, help=meaning)
        _common(command)
        command.add_argument("name", help="model folder name in the repository")
    retrieval_commands.add_commands(commands, _common)
    return parser


def _load(images: list[Path], texts: list[str]) -> tuple[list, list[str]]:
    items, descriptions = [], []
    for path in images:
        try:
            items.append(image_item(path))
        except OSError as error:
            raise SystemExit(f"crossmodal: cannot read image {path}: {error.strerror}") from error
        descriptions.append(f"image {path}")
    for text in texts:
        items.append(text_item(text))
        descriptions.append(f'text "{text}"')
    return items, descriptions


def _compare_sides(args) -> tuple[tuple[list, list[str]], tuple[list, list[str]]]:
    if args.query_image or args.query_text:
        return _load(args.query_image, args.query_text), _load(args.image, args.text)
    if args.image and args.text:
        return _load(args.image, []), _load([], args.text)
    everything = _load(args.image, args.text)
    return everything, everything


def run(args: argparse.Namespace, client: CrossModalClient) -> str:
    if args.command == "encode":
        items, descriptions = _load(args.image, args.text)
        if not items:
            raise SystemExit("crossmodal encode: give at least one --image or --text")
        response = client.encode(items, args.model, args.version)
        return _json(response) if args.json else encode_report(response, descriptions)
    if args.command == "compare":
        (queries, query_names), (candidates, candidate_names) = _compare_sides(args)
        if not queries or not candidates:
            raise SystemExit("crossmodal compare: give queries and candidates (--image/--text/--query-*)")
        response = client.compare(queries, candidates, args.model, args.version)
        return _json(response) if args.json else compare_report(response, query_names, candidate_names)
    if args.command in ("models", "load", "unload"):
        return _admin(args, client)
    if args.command in retrieval_commands.COMMANDS:
        return retrieval_commands.run(args, client)
    if args.command == "translate":
        response = client.translate(
            args.text,
            args.num_beams,
            args.num_hypotheses,
            args.max_length,
            args.length_penalty,
            args.model,
            args.version,
        )
        return _json(response) if args.json else translate_report(response)
    items, descriptions = _load(args.image, args.text)
    if not items:
        raise SystemExit("crossmodal classify: give at least one --image or --text to classify")
    response = client.classify(items, args.label, args.prompt_template, args.top_k, args.model, args.version)
    return _json(response) if args.json else classify_report(response, descriptions)


def _admin(args: argparse.Namespace, client: CrossModalClient) -> str:
    if args.command == "unload":
        client.unload_model(args.name)
        return f"{args.name}: unloading (each version closes after its last call)"
    response = client.load_model(args.name) if args.command == "load" else client.repository_index(args.ready)
    if args.json:
        return _json(response)
    rows = [f"{'model':24} {'version':>7}  {'state':11} {'kind':12} {'provider':9} reason"]
    for entry in response.models:
        version = str(entry.version) if entry.version else "-"
        state = f"{entry.state:11} {entry.kind:12} {entry.provider:9}"
        rows.append(f"{entry.name:24} {version:>7}  {state} {entry.reason}")
    return "\n".join(rows)


def _json(message) -> str:
    return proto_json(message)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with CrossModalClient(args.server, timeout=args.timeout, security=security(args)) as client:
        try:
            print(run(args, client))
        except grpc.RpcError as error:
            print(f"crossmodal {args.command}: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

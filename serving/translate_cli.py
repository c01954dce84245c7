"""`facegan translate`: one photo through a served image-to-image model (gRPC or REST).

    facegan translate --server localhost:8500 --model pix2pix --in photo.jpg --out out.png
    facegan translate --rest localhost:8501 --model pix2pix --in photo.jpg --out out.png \
        --derive grayscale --compare

The photo goes through exactly the ingestion's per-file path (decode with EXIF orientation and
alpha on the background, the crop policy, the named resize filter: `facegan.ingest.image_ops.decode` and
`image_ops.square_crop_resize`, same defaults as `facegan ingest`), so the model sees what it was
trained on. The size is the model's input resolution, read from the served signature's output
shape (facegan's image-to-image models keep the size; `--resolution` overrides). `--derive SPEC`
first applies one of the ingestion's paired transforms (e.g. `grayscale`, `lowres:factor=4`) to
make the model's kind of input from an ordinary photo; `--compare` writes [input | output] (and
the cropped photo first when derived) side by side instead of the output alone.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional

import numpy as np

from facegan.serving.client import DEFAULT_TIMEOUT_S, ClientError, GrpcClient, RestClient, _translate_signature

EXAMPLES = """example:
  facegan translate --server localhost:8500 --model pix2pix --in photo.jpg --out out.png
  facegan translate --rest localhost:8501 --model pix2pix --in photo.jpg --derive grayscale --compare --out cmp.png"""


def prepare_image(data: bytes, resolution: int, crop: str = "center", filter: str = "lanczos",
                  derive: str = "", derive_seed: int = 0):
    """Photo bytes -> (cropped uint8 [R, R, 3], the model input uint8 [R, R, 3]) by the ingestion's
    own functions; raises ValueError with the reason (an unreadable or too small photo)."""
    from facegan.ingest import paired
    from facegan.ingest import options as O
    from facegan.ingest import image_ops as IM
    try:
        rgb, _ = IM.decode(data, min_side=1)
    except O.Rejected as r:
        raise ValueError(f"{r.reason}: {r.detail}") from None
    face = IM.square_crop_resize(rgb, int(resolution), crop, filter)
    return face, (paired.apply(face, derive, derive_seed).image if derive else face)


def output_resolution(client, model: str, direction: Optional[str], version: Optional[int]) -> int:
    """The side of the served translate signature's `images` output."""
    sig = _translate_signature(direction)
    if isinstance(client, GrpcClient):
        dims = [d.size for d in client.signature_defs(model, version)[sig].outputs["images"].tensor_shape.dim]
    else:
        meta = client._request(client._url(model, version, "/metadata"))
        out = meta["metadata"]["signature_def"]["signature_def"][sig]["outputs"]["images"]
        dims = [int(d.get("size", -1)) for d in out.get("tensor_shape", {}).get("dim", [])]
    if len(dims) != 4 or dims[1] < 1:
        raise ValueError(f"signature {sig!r} of {model} has no known image size ({dims}); pass --resolution")
    return int(dims[1])


def add_arguments(parser: argparse.ArgumentParser):
    from facegan.ingest import options as O
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--server", help="TF Serving gRPC address HOST:PORT (e.g. localhost:8500)")
    where.add_argument("--rest", help="TF Serving REST address HOST:PORT (e.g. localhost:8501)")
    parser.add_argument("--model", required=True, help="served image-to-image model name")
    parser.add_argument("--version", type=int, default=None, help="model version (None: the latest served)")
    parser.add_argument("--direction", default=None, help="direction (CycleGAN); None: the model's default")
    parser.add_argument("--in", dest="input", required=True, help="input photo (any format ingestion reads)")
    parser.add_argument("--out", required=True, help="output PNG path")
    parser.add_argument("--crop", default="center", choices=O.CROPS, help="crop policy, as at ingestion")
    parser.add_argument("--filter", default=O.DEFAULT_FILTER, choices=O.FILTERS, help="resize filter, as at ingestion")
    parser.add_argument("--resolution", type=int, default=0, help="input side (default 0: read from the served signature)")
    parser.add_argument("--derive", default="", help="apply a paired transform first (e.g. grayscale, lowres:factor=4)")
    parser.add_argument("--derive-seed", type=int, default=0, help="seed of --derive (masked)")
    parser.add_argument("--compare", action="store_true", help="write [photo |] input | output side by side")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="per-call timeout in seconds")


def main(args) -> int:
    from facegan.images import encode_png, save_grid

    try:
        with open(args.input, "rb") as f:
            data = f.read()
    except OSError as e:
        print(f"facegan translate: --in {args.input}: {e.strerror or e}", file=sys.stderr)
        return 2
    if args.derive:
        from facegan.ingest import paired
        try:
            paired.parse_spec(args.derive)
        except ValueError as e:
            print(f"facegan translate: --derive: {e}", file=sys.stderr)
            return 2
    client = GrpcClient(args.server, args.timeout) if args.server else RestClient(args.rest, args.timeout)
    where = args.server or args.rest
    try:
        res = args.resolution or output_resolution(client, args.model, args.direction, args.version)
        try:
            face, model_input = prepare_image(data, res, args.crop, args.filter, args.derive, args.derive_seed)
        except ValueError as e:
            print(f"facegan translate: --in {args.input}: {e}", file=sys.stderr)
            return 2
        out = client.translate(args.model, model_input[None], args.direction, args.version)[0]
    except ClientError as e:
        print(f"facegan translate: {args.model} at {where}: {e}", file=sys.stderr)
        return 1
    except (KeyError, ValueError) as e:
        print(f"facegan translate: {args.model} at {where}: {e}", file=sys.stderr)
        return 1
    finally:
        if isinstance(client, GrpcClient):
            client.close()
    out = np.asarray(out, np.uint8)
    if args.compare:
        row = ([face] if args.derive else []) + [model_input, out]
        save_grid(np.stack(row), args.out, cols=len(row))
    else:
        with open(args.out, "wb") as f:
            f.write(encode_png(out))
    print(f"wrote {args.out}: {out.shape[0]}x{out.shape[1]} from {args.model} ({args.input}, "
          f"crop {args.crop}, filter {args.filter}{', derive ' + args.derive if args.derive else ''})")
    return 0

#!/usr/bin/env python
"""Upload an mlx-megabyte weights directory to the Hugging Face Hub, with a generated model card.

    python tools/push_to_hub.py --model weights/40m-tinystories/best --repo you/megabyte-40m-tinystories

Uploads config.json, model.safetensors and README.md (architecture, parameter count, data, bits per
byte, and how to load the model in mlx-megabyte and in megabyte-pytorch) in one commit. The token comes
from --token, HF_TOKEN or `huggingface-cli login`. --dry-run prints the model card and uploads nothing.
"""

from mlx_megabyte.cli import cli, number
from mlx_megabyte.cli import parser as parser_for


@cli
def main(argv=None):
    parser = parser_for("tools/push_to_hub.py", __doc__)
    parser.add_argument(
        "--model", required=True, help="a weights directory (or a run directory: its newest checkpoint)"
    )
    parser.add_argument("--repo", required=True, help="the model repository, user/name")
    parser.add_argument("--token", help="a Hugging Face token with write access (default: your login)")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--data", help="describe the training data in the card (default: from the checkpoint)")
    parser.add_argument(
        "--bpb", type=number(float, 0), help="validation bits per byte for the card (default: from the checkpoint)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the model card, upload nothing")
    args = parser.parse_args(argv)

    from mlx_megabyte.errors import UserError
    from mlx_megabyte.hub import looks_like_repo_id
    from mlx_megabyte.publish import model_card, push
    from mlx_megabyte.weights import locate

    if not looks_like_repo_id(args.repo):
        raise UserError(f"--repo must look like user/name, got {args.repo!r}")
    model_dir = locate(args.model)
    card = model_card(model_dir, args.repo, args.data, args.bpb)
    if args.dry_run:
        print(card)
        return
    print(f"uploaded {model_dir} to {push(model_dir, args.repo, args.token, args.private, card)}")


if __name__ == "__main__":
    main()

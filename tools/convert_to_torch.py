#!/usr/bin/env python
"""Convert an mlx-megabyte weights directory into a megabyte-pytorch 0.3.6 state dict.

    python tools/convert_to_torch.py --mlx-path weights/demo --torch-path megabyte.safetensors

Writes safetensors (no torch needed) or, if the name ends in .pt/.bin, a torch file, plus the constructor
config as `<name>.config.json`. In PyTorch:

    config = json.load(open("megabyte.config.json"))
    model = MEGABYTE(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
    model.load_state_dict(safetensors.torch.load_file("megabyte.safetensors"), strict=True)
"""

from pathlib import Path

from mlx_megabyte.cli import cli
from mlx_megabyte.cli import parser as parser_for
from mlx_megabyte.errors import UserError


def parse_args(argv=None):
    parser = parser_for("tools/convert_to_torch.py", __doc__)
    parser.add_argument("--mlx-path", required=True, help="an mlx-megabyte weights directory")
    parser.add_argument("--torch-path", required=True, help="the .safetensors, .pt or .bin file to write")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")
    return parser.parse_args(argv)


@cli
def main(argv=None):
    args = parse_args(argv)
    from mlx_megabyte import load
    from mlx_megabyte.models.megabyte.convert import (
        refuse_other_architectures,
        to_torch_state,
        torch_config_path,
        write_torch_state,
    )
    from mlx_megabyte.weights import read_config

    out = Path(args.torch_path)
    for path in (out, torch_config_path(out)):
        if path.exists() and not args.force:
            raise UserError(f"{path} already exists (use --force to overwrite)")
    refuse_other_architectures(read_config(args.mlx_path)[0])  # before anything is read or written
    model = load(args.mlx_path)
    config_path = write_torch_state(out, to_torch_state(model), model.config)
    print(f"wrote {out} and {config_path}")


if __name__ == "__main__":
    main()

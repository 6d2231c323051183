#!/usr/bin/env python
"""Convert a megabyte-pytorch 0.3.6 state dict into an mlx-megabyte weights directory.

    python tools/convert_from_torch.py --torch-path model.safetensors --mlx-path weights/converted

The config is read from the tensor shapes where they tell it; the rest (the global context without
pos_emb, heads vs dim_head without rel_pos, pad_id, dropouts) comes from --config, or from the
`<name>.config.json` that convert_to_torch.py writes beside its output.
"""

import json
import sys
from pathlib import Path

from mlx_megabyte.cli import cli
from mlx_megabyte.cli import parser as parser_for
from mlx_megabyte.errors import UserError


def parse_args(argv=None):
    parser = parser_for("tools/convert_from_torch.py", __doc__)
    parser.add_argument("--torch-path", required=True, help="a .safetensors, .pt or .bin state dict")
    parser.add_argument("--mlx-path", required=True, help="the weights directory to write")
    parser.add_argument(
        "--config", help="constructor arguments as a JSON file or inline JSON, e.g. '{\"max_seq_len\": [512, 4]}'"
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing weights directory")
    return parser.parse_args(argv)


def read_given_config(option, torch_path):
    from mlx_megabyte.models.megabyte.convert import torch_config_path

    if option is None:
        sidecar = torch_config_path(torch_path)
        if not sidecar.is_file():
            return {}
        option = str(sidecar)
    if option.lstrip().startswith("{"):  # inline JSON, however long (convert_to_torch.py writes long ones)
        text = option
    else:
        try:
            text = Path(option).read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(
                f"--config: cannot read {option} ({getattr(error, 'strerror', None) or error}); "
                "give a JSON file or an inline JSON object"
            ) from None
    try:
        given = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"--config is neither a JSON file nor valid JSON ({error})") from None
    if not isinstance(given, dict):
        raise UserError("--config must be a JSON object of constructor arguments")
    return given


@cli
def main(argv=None):
    args = parse_args(argv)
    from mlx_megabyte import MEGABYTE, save
    from mlx_megabyte.models.megabyte.convert import from_torch_state, read_torch_state
    from mlx_megabyte.weights import load_weights

    out = Path(args.mlx_path)
    if out.exists() and any(out.iterdir()) and not args.force:
        raise UserError(f"{out} already exists and is not empty (use --force to overwrite)")
    given = read_given_config(args.config, args.torch_path)
    state = read_torch_state(args.torch_path)
    config, weights, notes = from_torch_state(state, given)
    model = MEGABYTE(config)
    load_weights(model, weights)
    save(model, out)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {out} ({model.num_parameters():,} parameters, {config.stages} stages)")


if __name__ == "__main__":
    main()

"""One settings vocabulary (settings.py): a sampling or training setting's range is written once, on its
field, and the flags, the story REPL and the HTTP API's check refuse the same values in the same words."""

import dataclasses
import types

import pytest

from mlx_megabyte import protocol, repl, sampling, trainer
from mlx_megabyte.generate import build_parser as generate_parser
from mlx_megabyte.models import ARCHITECTURES
from mlx_megabyte.sampling import SamplingSettings, make_sampler
from mlx_megabyte.settings import WrongKind, check_value, settings_of
from mlx_megabyte.train import build_parser as train_parser
from mlx_megabyte.trainer import TrainingConfig

COMMAND = {name: command for command, (name, _, _) in repl.COMMANDS.items()}  # field -> REPL command
FLAG = {"temp": "--temp", "top_p": "--top-p", "min_p": "--min-p", "top_k": "--top-k", "seed": "--seed"}
FLAG["max_tokens"] = "--max-tokens"
FLAG["guide_strength"] = "--guide-strength"
BODY = {"temp": "temperature", "top_p": "top_p", "min_p": "min_p", "top_k": "top_k", "seed": "seed"}  # HTTP names
BODY["guide_strength"] = "guide_strength"

REFUSED = [
    ("temp", -1, "must be at least 0, got -1"),
    ("temp", 101, "must be at most 100, got 101"),
    ("top_p", 0, "must be above 0, got 0"),
    ("top_p", 2, "must be at most 1, got 2"),
    ("min_p", 1, "must be below 1, got 1"),
    ("min_p", -1, "must be at least 0, got -1"),
    ("top_k", -1, "must be at least 0, got -1"),
    ("seed", -1, "must be at least 0, got -1"),
    ("seed", 2**32, "must be at most 4294967295, got 4294967296"),
    ("max_tokens", -1, "must be at least 1, got -1"),
    ("max_tokens", 0, "must be at least 1, got 0"),
    ("guide_strength", -1, "must be at least 0, got -1"),
    ("guide_strength", 101, "must be at most 100, got 101"),
]
ACCEPTED = [
    ("temp", 0),
    ("temp", 100),
    ("top_p", 1),
    ("min_p", 0),
    ("top_k", 0),
    ("seed", 0),
    ("seed", 2**32 - 1),
    ("max_tokens", 1),
    ("guide_strength", 0),
    ("guide_strength", 100),
]


def flag_error(parser, flag: str, value, capsys) -> str:
    """What argparse says about `flag value`, less its "argument FLAG: " and "(see ... --help)"."""
    with pytest.raises(SystemExit):
        parser.parse_args([f"{flag}={value}"])
    line = capsys.readouterr().err.strip()
    assert line.count("\n") == 0, line
    return line.split(": ", 2)[-1].rsplit(" (see ", 1)[0]


def repl_answer(name: str, value, capsys) -> str:
    args = types.SimpleNamespace(**dataclasses.asdict(SamplingSettings()))
    assert repl._command(f"/{COMMAND[name]} {value}", args, {})
    return capsys.readouterr().out.strip()


@pytest.mark.parametrize("name, value, message", REFUSED)
def test_flags_the_repl_and_the_api_refuse_alike(name, value, message, capsys):
    assert flag_error(generate_parser(), FLAG[name], value, capsys) == message
    assert repl_answer(name, value, capsys) == f"invalid value: {message}"
    with pytest.raises(ValueError) as refused:
        check_value(SamplingSettings, name, value)
    assert str(refused.value) == message
    if name in BODY:  # the server's request parsing itself (max_tokens: the server allows 0, its own cap)
        with pytest.raises(protocol.ApiError) as answered:
            config = ARCHITECTURES["megabyte"].presets["tiny"]
            protocol.parse_completion({"prompt": "a", BODY[name]: value}, config, 64, 1)
        assert answered.value.status == 400 and str(answered.value) == f"'{BODY[name]}' {message}"


@pytest.mark.parametrize("name, value", ACCEPTED)
def test_the_edges_are_accepted_everywhere(name, value, capsys):
    assert getattr(generate_parser().parse_args([f"{FLAG[name]}={value}"]), name) == value
    assert (
        repl_answer(name, value, capsys)
        == f"{COMMAND[name]} {value if name in ('seed', 'top_k', 'max_tokens') else float(value)}"
    )
    assert check_value(SamplingSettings, name, value) == value
    SamplingSettings(**{name: value})


def test_the_api_check_knows_kinds_and_optional_values():
    assert check_value(SamplingSettings, "seed", None) is None  # optional: the server draws one
    assert isinstance(check_value(SamplingSettings, "temp", 1), float)
    for name, value in (("temp", "hot"), ("top_k", 2.5), ("seed", True), ("max_tokens", "10")):
        with pytest.raises(WrongKind):  # the server's invalid_type, not invalid_value
            check_value(SamplingSettings, name, value)
    with pytest.raises(ValueError, match="must be finite, got nan"):
        check_value(SamplingSettings, "temp", float("nan"))


def test_the_library_checks_the_same_ranges():
    for name, value, _ in REFUSED:
        with pytest.raises(ValueError, match=f"^{name} must be"):
            SamplingSettings(**{name: value})
    with pytest.raises(ValueError, match=r"temp must be a number in \[0, 100\], got 101"):
        make_sampler(101)
    with pytest.raises(ValueError, match="filter_thres"):
        make_sampler(filter_thres=1)


def test_every_bound_is_written_once():
    """No table of ranges beside the fields: the sampling and training settings are dataclass fields."""
    assert not hasattr(sampling, "RANGES") and not hasattr(trainer, "RANGES")
    assert not hasattr(trainer, "bounds")
    names = {f.name for f in dataclasses.fields(TrainingConfig)}
    assert set(settings_of(TrainingConfig)) == names - {"model"}
    defaults = SamplingSettings()
    assert (sampling.DEFAULT_TEMP, sampling.DEFAULT_TOP_P, sampling.DEFAULT_MIN_P, sampling.DEFAULT_TOP_K) == (
        defaults.temp,
        defaults.top_p,
        defaults.min_p,
        defaults.top_k,
    )


def test_every_training_setting_has_its_flag_made_from_the_field(capsys):
    """Each TrainingConfig field's flag takes its default and help from the field, and refuses the value
    below its lowest (or above its highest) in the words check_value uses; TrainingConfig refuses it too."""
    parser = train_parser()
    actions = {action.dest: action for action in parser._actions}
    defaults = vars(parser.parse_args([]))
    model = ARCHITECTURES["megabyte"].presets["tiny"]
    for name, field in settings_of(TrainingConfig).items():
        spec = field.metadata
        assert actions[name].help.replace("%%", "%").startswith(spec["help"]), name
        assert defaults[name] in (field.default, None), name
        for bound, step in (("low", -1), ("high", 1)):
            if spec[bound] is None:
                continue
            edge = spec[bound] if spec[f"{bound}_open"] else spec[bound] + step
            message = flag_error(parser, f"--{name.replace('_', '-')}", edge, capsys)
            with pytest.raises(ValueError) as refused:
                check_value(TrainingConfig, name, edge)
            assert str(refused.value) == message, name
            with pytest.raises(Exception, match=f"^{name} must be"):
                TrainingConfig(model=model, **{name: edge})


def test_the_repl_help_lists_every_command():
    for command, (name, metavar, _) in repl.COMMANDS.items():
        assert f"/{command} {metavar}" in repl.HELP
        assert name in SamplingSettings.__dataclass_fields__


@pytest.mark.parametrize(
    "flag, name, value",
    [
        ("--port", "port", 65536),
        ("--max-batch", "max_batch", 0),
        ("--timeout", "timeout", 0),
        ("--max-tokens", "max_tokens", 0),
    ],
)
def test_the_servers_limits_are_settings_too(flag, name, value, capsys):
    """The server's flags are generated from ServerSettings: refused in the words check_value uses."""
    from mlx_megabyte.server import ServerSettings, build_parser

    with pytest.raises(ValueError) as refused:
        check_value(ServerSettings, name, value)
    assert flag_error(build_parser(), flag, value, capsys) == str(refused.value)
    assert build_parser().parse_args([]).__dict__[name] == ServerSettings.__dataclass_fields__[name].default

"""mlx_megabyte.sizing: the size `--preset auto` would pick for a time budget, on made-up speed tables
(every expectation worked out by hand below), and the speed measurement on the tiny preset."""

import json
import math

import pytest

from mlx_megabyte import sizing
from mlx_megabyte.models import architecture, build
from mlx_megabyte.sizing import Candidate, choose

# Made-up speeds: a larger model trains slower.
TABLE = [
    Candidate("tiny", 200_000, 100_000.0, 4096),
    Candidate("small", 4_000_000, 12_500.0, 4096),
    Candidate("big", 40_000_000, 1_000.0),
]


@pytest.mark.parametrize(
    "budget,chosen,seen,per_parameter",
    [
        # 100 s: tiny sees 10 MB, 50 per parameter (|ln 50/20| = 0.92); small 1.25 MB, 0.3125 (4.16): tiny.
        (100, "tiny", 10_000_000, 50.0),
        # 6,400 s: small sees 80 MB, exactly 20 per parameter; tiny 3,200 (5.08), big 0.16 (4.83): small.
        (6_400, "small", 80_000_000, 20.0),
        # 640,000 s: big sees 640 MB, 16 per parameter (|ln 0.8| = 0.22); small 2,000 (4.61): big.
        (640_000, "big", 640_000_000, 16.0),
    ],
)
def test_the_size_whose_bytes_per_parameter_is_nearest_the_target_wins(budget, chosen, seen, per_parameter):
    choice = choose(TABLE, budget)
    assert choice.chosen.name == chosen
    reason = next(r for r in choice.reasons if r.chosen)
    assert (
        reason.name == chosen
        and reason.bytes_seen == seen
        and reason.bytes_per_parameter == pytest.approx(per_parameter)
    )
    assert [r.chosen for r in choice.reasons].count(True) == 1
    assert choice.bytes_per_parameter == sizing.DEFAULT_BYTES_PER_PARAMETER == 20


def test_the_rules_constant_is_a_parameter():
    # At 100 s small sees 0.3125 bytes per parameter: with that as the target it wins, though 20 picks tiny.
    assert choose(TABLE, 100, bytes_per_parameter=0.3125).chosen.name == "small"
    assert choose(TABLE, 100, bytes_per_parameter=0.3125).reasons[1].distance == pytest.approx(0)
    # 500 per parameter: tiny sees 50 (|ln 0.1| = 2.30), small 0.3125 (7.38): tiny.
    assert choose(TABLE, 100, bytes_per_parameter=500).chosen.name == "tiny"


@pytest.mark.parametrize("order", [1, -1])
def test_a_tie_goes_to_the_smaller_model(order):
    # At 100 s, A sees 10,000 bytes for 1,000 parameters (10, half the target) and B 20,000 for 500 (40,
    # twice it): equally far in ratio, so the smaller B, whichever comes first.
    candidates = [Candidate("A", 1_000, 100.0), Candidate("B", 500, 200.0)][::order]
    choice = choose(candidates, 100)
    assert choice.chosen.name == "B"
    distances = {r.name: r.distance for r in choice.reasons}
    assert distances["A"] == pytest.approx(math.log(2)) and distances["B"] == pytest.approx(math.log(2))


def test_the_reasons_are_data_and_a_printable_explanation():
    choice = choose(TABLE, 100)
    data = json.loads(json.dumps(choice.to_dict()))  # plain JSON
    assert data["chosen"] == "tiny" and data["time_budget"] == 100 and data["bytes_per_parameter"] == 20
    assert "nearest 20 in ratio" in data["rule"]
    rows = {row["name"]: row for row in data["candidates"]}
    assert rows["tiny"]["steps"] == 10_000_000 // 4096 == 2441  # what --iters would need
    assert rows["big"]["steps"] is None  # its bytes per step unknown
    assert rows["small"]["bytes_seen"] == 1_250_000 and rows["small"]["bytes_per_parameter"] == 0.3125
    text = choice.explain()
    assert text.splitlines()[0] == "--preset auto: tiny (200,000 parameters) for 100 s of training"
    assert "100,000 bytes/s here: 10,000,000 bytes in the budget, 50 per parameter" in text
    assert f"rule: {choice.rule}" in text
    assert "* tiny" in text and "  small" in text and "* small" not in text


@pytest.mark.parametrize(
    "candidates,budget,fragment",
    [
        ([], 100, "at least one candidate"),
        (TABLE, 0, "time budget"),
        (TABLE, math.inf, "time budget"),
        ([Candidate("x", 1_000, math.nan)], 100, "candidate 'x'"),
        ([Candidate("x", 0, 10.0)], 100, "candidate 'x'"),
    ],
)
def test_impossible_tables_are_refused_in_a_sentence(candidates, budget, fragment):
    with pytest.raises(ValueError, match=fragment):
        choose(candidates, budget)


def timed_by_durations(monkeypatch, durations):
    """A clock that moves only when a training step runs, by that step's entry in `durations`: the
    steps' real compute happens, their time is made up. Returns (the clock, the list of steps run)."""
    from mlx_megabyte import optim

    now, calls = [0.0], []
    durations = iter(durations)

    class TimedStep(optim.TrainStep):
        def __call__(self, batch, loss_scale=1.0):
            calls.append(batch.shape)
            now[0] += next(durations)
            return super().__call__(batch, loss_scale)

    monkeypatch.setattr(optim, "TrainStep", TimedStep)
    return (lambda: now[0]), calls


@pytest.mark.parametrize("accumulation", [1, 2])
def test_measure_times_only_the_steps_after_the_warm_up(monkeypatch, accumulation):
    """A clock that moves one second per step: three timed steps in three seconds, whatever the
    machine, and the two warm-up steps run but are not counted."""
    from mlx_megabyte import trainer

    clock, calls = timed_by_durations(monkeypatch, [1.0] * 5 + [99.0])
    tiny = architecture("megabyte").presets["tiny"]
    config = trainer.TrainingConfig(model=tiny, batch_size=2, grad_accumulation_steps=accumulation)
    measured = sizing.measure("tiny", config, seconds=3, warmup_steps=2, clock=clock)
    assert calls == [(2 * accumulation, 256)] * 5  # 2 warm-up + 3 timed, of the batch train would use
    assert measured.measured_steps == 3 and measured.measured_seconds == 3.0
    assert measured.bytes_per_step == 2 * accumulation * 256
    assert measured.bytes_per_second == 3 * 2 * accumulation * 256 / 3
    assert measured.parameters == build(tiny).num_parameters() == 191_168
    assert measured.name == "tiny"


def test_the_warm_up_lasts_its_seconds_and_the_timing_its_seconds(monkeypatch):
    """Slow first steps (a buffer cache still growing) are left out by time, not by a count: four
    steps of 0.25 s make the 1-s warm-up, then eight of 0.125 s the 1-s timing (binary-exact times)."""
    from mlx_megabyte import trainer

    clock, calls = timed_by_durations(monkeypatch, [0.25] * 4 + [0.125] * 8 + [99.0])
    config = trainer.TrainingConfig(model=architecture("megabyte").presets["tiny"], batch_size=2)
    measured = sizing.measure("tiny", config, seconds=1.0, warmup_steps=2, clock=clock, warmup_seconds=1.0, min_steps=3)
    assert len(calls) == 12
    assert measured.measured_steps == 8 and measured.measured_seconds == 1.0
    assert measured.bytes_per_second == 8 * 2 * 256 / 1.0  # 4,096 bytes/s: the fast steps' speed


def test_slow_steps_are_timed_at_least_min_steps_times(monkeypatch):
    """Steps of 2 s: the warm-up is its 2 steps (4 s, past its 1 s), and the 3-s timing takes 3 steps
    (6 s), not the 2 that the seconds alone would stop at: one slow step is not a speed."""
    from mlx_megabyte import trainer

    clock, calls = timed_by_durations(monkeypatch, [2.0] * 5 + [99.0])
    config = trainer.TrainingConfig(model=architecture("megabyte").presets["tiny"], batch_size=2)
    measured = sizing.measure("tiny", config, seconds=3.0, clock=clock)  # the defaults otherwise
    assert (sizing.DEFAULT_WARMUP_STEPS, sizing.DEFAULT_WARMUP_SECONDS) == (2, 1.0)
    assert (sizing.DEFAULT_MEASURE_STEPS, sizing.DEFAULT_MEASURE_SECONDS) == (3, 3.0)
    assert len(calls) == 5 and measured.measured_steps == 3 and measured.measured_seconds == 6.0
    assert measured.bytes_per_second == 3 * 2 * 256 / 6.0


@pytest.mark.parametrize(
    "knobs",
    [dict(seconds=0), dict(seconds=math.nan), dict(min_steps=0), dict(warmup_steps=-1), dict(warmup_seconds=-1)],
)
def test_measure_refuses_no_time(knobs):
    tiny = architecture("megabyte").presets["tiny"]
    from mlx_megabyte.trainer import TrainingConfig

    with pytest.raises(ValueError, match="positive number of seconds and steps"):
        sizing.measure("tiny", TrainingConfig(model=tiny), **knobs)


# --- measuring smallest first, and train --preset auto ----------------------------------------------------


def fake_measure(table, timed):
    speeds = {c.name: c for c in table}

    def measure(name, config):
        timed.append(name)
        return speeds[name]

    return measure


@pytest.mark.parametrize(
    "budget,timed,chosen",
    [
        # 100 s: tiny sees 50 per parameter (above 20), small 0.3125 (below): big is never timed; tiny wins.
        (100, ["tiny", "small"], "tiny"),
        # 640,000 s: tiny 320,000 and small 2,000 are above 20, big 16 below: all three timed; big wins.
        (640_000, ["tiny", "small", "big"], "big"),
    ],
)
def test_sizes_are_timed_smallest_first_until_one_is_below_the_target(budget, timed, chosen):
    seen = []
    choice = sizing.measure_sizes(dict.fromkeys(["tiny", "small", "big"]), budget, measure=fake_measure(TABLE, seen))
    assert seen == timed and choice.chosen.name == chosen
    assert list(choice.unmeasured) == ["tiny", "small", "big"][len(timed) :]
    assert ("not timed: big" in choice.explain()) == (len(timed) == 2)


def parse(*flags):
    from mlx_megabyte.train import build_parser

    return build_parser().parse_args(["--data", "builtin", "--builtin-mb", "0.4", *flags])


def test_train_preset_auto_takes_the_size_the_rule_picks_and_says_why(monkeypatch):
    """The presets' measured speeds (made up): at 100 s tiny wins, and --iters becomes the steps the
    budget allows at tiny's speed; with a larger budget the next size, and the save path follows."""
    import io

    from rich.console import Console

    from mlx_megabyte import train

    speeds = {"tiny": 100_000.0, "small": 12_500.0, "40m": 1_000.0}
    timed = []

    def measure(name, config):
        timed.append(name)
        model = build(config.model)
        return Candidate(name, model.num_parameters(), speeds[name], config.bytes_per_rank_step)

    monkeypatch.setattr(sizing, "measure", measure)
    monkeypatch.setattr(sizing.measure_sizes, "__defaults__", (sizing.DEFAULT_BYTES_PER_PARAMETER, measure, None))
    console = Console(file=io.StringIO(), width=200)
    args = parse("--preset", "auto", "--time-budget", "100")
    assert train.auto_preset(args, console) == "tiny" and timed == ["tiny", "small"]
    # tiny: 191,168 parameters, 10 MB in 100 s (52 per parameter); small's 1.25 MB is 0.29 per parameter
    assert args.iters == 100 * 100_000 // 4096
    said = console.file.getvalue()
    assert "--preset auto: tiny (191,168 parameters) for 100 s" in said and "not timed: 40m" in said
    assert f"--iters {args.iters:,}" in said
    args = parse("--preset", "auto", "--time-budget", "20000", "--iters", "50")
    args.preset = train.auto_preset(args, console)
    assert args.preset == "small" and args.iters == 50  # given --iters are kept
    assert train.training_config(args).save_path == "weights/small-builtin"


@pytest.mark.parametrize(
    "flags,fragment",
    [
        (["--preset", "auto"], "give --time-budget SECONDS"),
        (["--preset", "auto", "--time-budget", "60", "--dim", "64,32"], "drop --dim"),
        (["--preset", "auto", "--time-budget", "60", "--resume"], "--resume continues the run's own model"),
    ],
)
def test_train_preset_auto_refuses_what_it_cannot_honour_in_one_line(flags, fragment, tmp_path):
    from .helpers import one_line_error, run

    one_line_error(
        run(
            "-m",
            "mlx_megabyte.train",
            "--data",
            "builtin",
            "--builtin-mb",
            "0.4",
            "--save-path",
            str(tmp_path / "r"),
            *flags,
        ),
        fragment,
    )

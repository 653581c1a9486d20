"""charrnn.training.autosize: the rule `model: auto` applies (the CLI side is in test_train.py)."""

import pytest

from charrnn.training import autosize


def test_parameter_counts_match_the_real_model():
    from charrnn.nn.model import build_model

    for cell, layers, units in [
        ("lstm", 1, 128),
        ("lstm", 2, 192),
        ("lstm", 2, 384),
        ("gru", 2, 128),
        ("rnn", 2, 128),
        ("mingru", 1, 128),
        ("mingru", 2, 192),
        ("minlstm", 3, 64),
    ]:
        model = build_model(
            70,
            cell=cell,
            num_layers=layers,
            rnn_size=units,
            embedding_size=autosize.embedding_size(units),
        )
        assert model.count_params() == autosize.params(layers, units, 70, cell), cell


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_a_parallel_cell_s_multiply_adds_are_its_blocks_and_logits(cell):
    """Per symbol, forward: each block's projection (G H^2) and feed-forward (2 x 4 H^2),
    and the logits; the engines' count of a built model's weights says the same."""
    from charrnn.nn.cells import get
    from charrnn.nn.model import build_model
    from charrnn.nn.tensors import weights_from_model

    model = build_model(70, cell=cell, num_layers=2, rnn_size=48, embedding_size=48)
    assert model.embedding_size == autosize.embedding_size(48, cell) == 48
    forward = 2 * (get(cell).gates * 48 * 48 + 2 * 4 * 48 * 48) + 48 * 70
    assert autosize.macs_per_symbol(2, 48, 70, cell) == 3 * forward
    assert weights_from_model(model).macs_per_step() == forward


FLOAT32 = autosize.Speed(1.0, "", "float32")  # the calibration machines' own speeds
BFLOAT16 = autosize.Speed(1.0, "", "bfloat16")


@pytest.mark.parametrize("speed", [FLOAT32, BFLOAT16])
def test_throughput_reproduces_the_calibration_and_falls_with_size(speed):
    for macs, measured in autosize.CALIBRATIONS[speed.table]["table"]:
        layers, units = next(
            (
                lu
                for lu in autosize.LADDER
                if abs(autosize.macs_per_symbol(*lu, 65) - macs) < 0.01e6
            ),
            (0, 0),
        )
        if layers:
            assert autosize.symbols_per_second(layers, units, 65, "lstm", speed) == pytest.approx(
                measured, rel=0.02
            )
    speeds = [autosize.symbols_per_second(*lu, 65, "lstm", speed) for lu in autosize.LADDER]
    assert speeds == sorted(speeds, reverse=True)
    assert autosize.symbols_per_second(
        2, 256, 65, "lstm", speed._replace(factor=2.0)
    ) == pytest.approx(2 * autosize.symbols_per_second(2, 256, 65, "lstm", speed))


def test_more_time_or_a_faster_machine_never_chooses_a_smaller_model():
    sizes = []
    for budget, speed in [(60, 3000), (600, 3000), (600, 30000), (3600, 30000), (36000, 1e5)]:
        chosen, reason = autosize.choose(65, 1_000_000, budget, throughput=speed)
        sizes.append(autosize.params(chosen["num_layers"], chosen["rnn_size"], 65))
        assert reason.startswith(f"model auto: {chosen['num_layers']}x{chosen['rnn_size']} lstm")
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_dropout_only_when_the_budget_rereads_the_data():
    few, _ = autosize.choose(65, 100_000_000, 600, throughput=10000)  # a fraction of an epoch
    many, _ = autosize.choose(65, 100_000, 600, throughput=10000)  # hundreds of epochs
    assert few["dropout"] == 0.0
    assert 0 < many["dropout"] <= autosize.DROPOUT_MAX


def test_cell_auto_chooses_mingru_where_the_lstm_reads_the_data_few_times_or_symbols_are_many():
    speed = autosize.machine_speed(65, 10000.0)
    lines = []
    few = autosize.choose_cell(65, 100_000_000, 600, speed, lines.append)  # a fraction of an epoch
    many = autosize.choose_cell(65, 100_000, 600, speed, lines.append)  # hundreds of epochs
    assert (few, many) == ("mingru", "lstm")
    assert lines[0].startswith("model auto: mingru: 65 symbols (under 256); a ")
    assert lines[0].endswith("times in 10 min (under 8)")
    assert lines[1].startswith("model auto: lstm: 65 symbols (under 256); a ")
    assert lines[1].endswith("times in 10 min (at least 8)")
    # a syllable vocabulary: minGRU however often the data is read
    assert autosize.choose_cell(964, 100_000, 600, speed) == "mingru"
    assert autosize.choose_cell(255, 100_000, 600, speed) == "lstm"
    # the boundary is the LSTM's reading of the data, whatever the budget and the corpus
    layers, units, _, seen, _ = autosize._largest(65, 600, "lstm", speed, float("inf"))
    edge = seen / autosize.PARALLEL_BELOW_EPOCHS
    assert autosize.choose_cell(65, int(edge * 1.01), 600, speed) == "mingru"
    assert autosize.choose_cell(65, int(edge * 0.99), 600, speed) == "lstm"


def test_the_cost_of_a_symbol_counts_the_output_layer_and_the_softmax():
    """Each symbol of the vocabulary costs the output layer's multiply-adds (units, forward,
    and twice that backward) and the softmax's."""
    for layers, units, cell in [(1, 64, "lstm"), (2, 256, "lstm"), (2, 128, "mingru")]:
        extra = autosize.cost_per_symbol(layers, units, 8779, cell) - autosize.cost_per_symbol(
            layers, units, 250, cell
        )
        assert extra == (3 * units + autosize.SOFTMAX_MACS) * (8779 - 250)
        assert (
            autosize.cost_per_symbol(layers, units, 65, cell)
            == autosize.macs_per_symbol(layers, units, 65, cell) + autosize.SOFTMAX_MACS * 65
        )


# Training on 197 MB of Python: its 8,779 symbols against the 250 `prepare --min-count 100`
# leaves, chars per CPU-second, means of 2 rounds (benchmarks/RESULTS.md, "Rare symbols").
MEASURED = {(1, 64): (9958, 172740), (2, 256): (3722, 17706)}


def test_predicted_throughput_falls_with_the_vocabulary_as_measured():
    for (layers, units), (full, folded) in MEASURED.items():
        predicted = autosize.symbols_per_second(
            layers, units, 250, "lstm", FLOAT32
        ) / autosize.symbols_per_second(layers, units, 8779, "lstm", FLOAT32)
        assert predicted == pytest.approx(folded / full, rel=0.15), (layers, units)


def test_a_large_vocabulary_gets_a_smaller_model_for_the_same_budget(monkeypatch):
    speed = autosize.machine_speed(65, 10000.0)
    for budget in (600, 7200, 36000, 72000):
        small, _ = autosize.choose(100, 50_000_000, budget, speed=speed)
        large, reason = autosize.choose(7639, 50_000_000, budget, speed=speed)
        assert large["rnn_size"] * large["num_layers"] < small["rnn_size"] * small["num_layers"]
        seen = float(reason.split(" at about ")[1].split(" symbols/s")[0].replace(",", ""))
        assert seen == pytest.approx(
            autosize.symbols_per_second(
                large["num_layers"], large["rnn_size"], 7639, "lstm", speed
            ),
            rel=1e-3,
        )
    # 2 hours: a 1x128 LSTM, where counting the output layer's multiply-adds alone chose 2x128
    large, reason = autosize.choose(7639, 50_000_000, 7200, speed=speed)
    assert (large["num_layers"], large["rnn_size"]) == (1, 128)
    assert reason.startswith(
        "model auto: 1x128 lstm, embedding 64, dropout 0 (1,573,143 parameters): 120 min at about "
    )
    monkeypatch.setattr(autosize, "SOFTMAX_MACS", 0)
    assert autosize.choose(7639, 50_000_000, 7200, speed=speed)[0]["num_layers"] == 2


def test_the_size_is_for_the_symbols_max_epochs_lets_the_run_read():
    """A run that max_epochs / max_steps end before its budget reads fewer symbols: its
    model is the one that many symbols train best, and the reason says why."""
    speed = autosize.machine_speed(65, 30000.0)
    free, reason = autosize.choose(65, 1_000_000, 3600, speed=speed)
    assert "end it first" not in reason
    seen = float(reason.split(" reads ")[1].split("M symbols")[0]) * 1e6
    capped, why = autosize.choose(65, 1_000_000, 3600, speed=speed, most=seen / 8)
    assert "M symbols (max_epochs / max_steps end it first), " in why
    assert f"reads {seen / 8e6:,.1f}M symbols" in why
    n = autosize.params(capped["num_layers"], capped["rnn_size"], 65)
    assert n < autosize.params(free["num_layers"], free["rnn_size"], 65)
    assert seen / 8 / n >= autosize.TOKENS_PER_PARAM
    assert capped["dropout"] < free["dropout"]
    # a limit beyond what the budget reads changes nothing
    assert autosize.choose(65, 1_000_000, 3600, speed=speed, most=seen * 2) == (free, reason)
    # and the cell rule reads the same symbols: few epochs allowed, the parallel cell
    assert autosize.choose_cell(65, 1_000_000, 3600, speed) == "lstm"
    assert autosize.choose_cell(65, 1_000_000, 3600, speed, most=2_000_000) == "mingru"


def test_the_probe_measures_the_matmuls_of_the_run_s_precision(monkeypatch):
    """machine_speed reads the calibration of the run's kind of matmul (bfloat16 where its
    precision resolves to mixed_bfloat16: precision auto on a CPU with AVX512_BF16 or AMX,
    not where ONEDNN_MAX_CPU_ISA=AVX2 withholds them) and scales it by the probe, a child
    process timing TensorFlow's matmul in that dtype."""
    import sys

    from charrnn.errors import CharrnnError
    from charrnn.training import distribute, probe

    auto = autosize.machine_speed(65, precision="auto")
    assert auto.table == ("bfloat16" if distribute.bfloat16_in_hardware() else "float32")
    # a CPU core does more than 1e9 multiply-adds a second, less than 1e13
    assert 1e9 < auto.factor * autosize.CALIBRATIONS[auto.table]["probe"] < 1e13
    predicted = autosize.symbols_per_second(2, 256, 65, "lstm", auto)
    assert auto.how == f"measured: about {predicted:,.0f} {auto.table} symbols/s at 2x256 here"
    assert autosize.machine_speed(65, 3000.0, "float32").table == "float32"
    assert autosize.machine_speed(65, 3000.0, "mixed_bfloat16").table == "bfloat16"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert autosize.machine_speed(65, 3000.0).table == "float32"
    # a child that fails, one that cannot start: one message, what to do instead
    for dtype, why in [("float64", "not 'float64'"), ("float32", "No such file")]:
        with pytest.raises(CharrnnError) as e:
            probe.run(dtype)
        message = str(e.value)
        assert message.startswith("model auto could not measure this machine's speed (")
        assert why in message
        assert message.endswith("give it as model.auto_throughput (symbols/s of a 2x256 LSTM)")
        monkeypatch.setattr(sys, "executable", "/nonexistent/python")

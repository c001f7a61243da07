import os
import subprocess
import sys

import pytest

from perfpred import cli


def test_help_lists_user_commands_apart_from_pipeline_stages_with_an_example_each(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    users, stages = out.split("pipeline stages")
    for name in ("describe", "predict", "recommend", "measure", "train", "tune"):
        assert f"\n  {name} " in users and f"e.g. perfpred {name} " in users, name
    for name in cli.PIPELINE_STAGES:
        assert f"\n  {name} " in stages and f"\n  {name} " not in users, name
    assert users.index("\n  describe ") < users.index("\n  predict ") < users.index("\n  train ")


def test_version(capsys):
    import perfpred

    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.strip() == f"perfpred {perfpred.__version__}"


@pytest.mark.parametrize("name", list(cli.SUBCOMMANDS))
def test_every_subcommand_explains_its_own_options(name, capsys):
    try:
        code = cli.main([name, "--help"])
    except SystemExit as exited:  # argparse's --help
        code = exited.code
    out = capsys.readouterr().out
    assert code == 0 and out.startswith(f"usage: perfpred {name}")
    assert "Powered by Hydra" not in out


def test_train_and_tune_help_name_their_overrides(capsys):
    assert cli.main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("target=NAME", "metric=NAME", "algorithm=NAME", "train.seeds=", "-m, --multirun", "--pipeline", "~tuned"):
        assert option in out, option
    assert "jetson-nano" in out and "xgb" in out  # the known options are listed
    assert cli.main(["tune", "--help"]) == 0
    out = capsys.readouterr().out
    assert "tune.trials=" in out and "train.seeds=" not in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "algorithm=lasso"], "unknown algorithm 'lasso': known algorithms are blend_kernels, ens, ens_kernels, kernels, mlp, poly, pooled, pooled_ens, pooled_ens_kernels, pooled_svr, rf, svr, xgb"),
        (["train", "-m", "metric=latency,energy"], "unknown metric 'energy'"),
        (["train", "train.sedes=2"], "unknown setting 'train.sedes': known train settings are"),
        (["tune", "colour=red"], "unknown setting 'colour'"),
        (["describe", "no/such/model.json"], "no/such/model.json"),
        (["import", "jetson-orin9"], "target 'jetson-orin9' is not an imported target"),
    ],
)
def test_error_paths_end_with_one_line_and_a_non_zero_code(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"perfpred {argv[0]}: error: ") and message in err, err


def test_predict_app_prints_no_tensorflow_start_up_lines(tmp_path):
    """`predict app:...` builds the network with TensorFlow; its load-time log lines (twice, before) are not shown."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'empty.db'}"}
    done = subprocess.run([sys.executable, "-m", "perfpred.cli", "predict", "app:MobileNetV2", "--input-size", "96"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr  # an empty store: one error line
    assert "oneDNN" not in done.stderr and "absl" not in done.stderr


def test_bad_input_is_one_clear_line(capsys):
    assert cli.main(["import", "jetson-orin9"]) == 2
    err = capsys.readouterr().err
    assert "perfpred import: error: target 'jetson-orin9' is not an imported target" in err
    assert "Traceback" not in err


def test_console_script_starts_without_heavy_imports():
    code = "import sys; from perfpred import cli; cli.top_parser(); print(sorted(m for m in ('tensorflow', 'mlflow', 'sklearn', 'keras') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"

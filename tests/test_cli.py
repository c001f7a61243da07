import subprocess
import sys

import pytest

from perfpred import cli


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for name in cli.SUBCOMMANDS:
        assert name in out


def test_every_subcommand_module_has_an_entry_point():
    import importlib

    for name, (module_name, _) in cli.SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        if getattr(module, "HYDRA_APP", False):
            assert callable(module.main), name
        else:
            assert callable(module.add_arguments) and callable(module.run), name


def test_bad_input_is_one_clear_line(capsys):
    assert cli.main(["import", "jetson-orin9"]) == 2
    err = capsys.readouterr().err
    assert "perfpred import: error: target 'jetson-orin9' is not an imported target" in err
    assert "Traceback" not in err


def test_console_script_starts_without_heavy_imports():
    code = "import sys; from perfpred import cli; cli.top_parser(); print(sorted(m for m in ('tensorflow', 'mlflow', 'sklearn', 'keras') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"

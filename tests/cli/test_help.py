"""Help text: every option has help, defaults are shown once and are the real ones, on/off flags show no
misleading default, `train` has no ignored --split, and `--help` answers without importing torch."""
import argparse
import inspect
import re
import subprocess
import sys

import pytest

from fastvit_analysis.cli.main import build_parser

COMMANDS = ["train", "hessian", "landscape", "fourier", "variance", "cka", "robustness", "report", "demo"]


def subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, action.choices


def help_of(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    return capsys.readouterr().out


def option_blocks(text):
    """Option string -> its help text (the wrapped lines joined), from an argparse help page."""
    blocks, current = {}, None
    for line in text.splitlines():
        m = re.match(r"^  (-{1,2}[\w-]+)", line)
        if m:
            current = m.group(1)
            blocks[current] = line
        elif current and line.startswith("    "):
            blocks[current] += " " + line.strip()
        else:
            current = None
    return {k: " ".join(v.split()) for k, v in blocks.items()}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help_and_one_true_default(command, capsys):
    _, subs = subparsers()
    for action in subs[command]._actions:
        if action.option_strings and action.help is not argparse.SUPPRESS:
            assert action.help, f"{command} {action.option_strings[0]} has no help"
    blocks = option_blocks(help_of(command, capsys))
    assert blocks
    for option, text in blocks.items():
        assert "(default: None)" not in text, (command, option, text)
        assert "(default: True)" not in text and "(default: False)" not in text, (command, option, text)
        assert text.lower().count("default") <= 1, (command, option, text)


def test_out_help_names_the_directory_the_command_really_uses(capsys):
    from fastvit_analysis.cli import commands

    for command in ["hessian", "landscape", "fourier", "variance", "cka", "robustness"]:
        assert "(default: ./fastvit-out)" in option_blocks(help_of(command, capsys))["--out"]
    # the fallbacks the commands pass to out_dir: fastvit-train for train, fastvit-out for every analysis
    fallbacks = re.findall(r'out_dir\(args, "([^"]+)"\)', inspect.getsource(commands))
    assert sorted(set(fallbacks)) == ["fastvit-out", "fastvit-train"] and fallbacks.count("fastvit-train") == 1
    assert "(default: ./fastvit-train)" in option_blocks(help_of("train", capsys))["--out"]
    assert '"fastvit-train"' in inspect.getsource(commands.run_train)


def test_no_resume_reads_as_off_by_default(capsys):
    for command in ["train", "hessian", "landscape", "robustness"]:
        text = option_blocks(help_of(command, capsys))["--no-resume"]
        assert "default" not in text.lower(), text
    args = build_parser().parse_args(["landscape", "--model", "demo_vit"])
    assert args.resume is True
    assert build_parser().parse_args(["landscape", "--model", "demo_vit", "--no-resume"]).resume is False


def test_train_split_is_an_error_not_ignored(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["train", "--model", "demo_vit", "--split", "test"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --split" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["hessian", "--help"], ["train", "--help"], ["--version"],
                                  ["landscape", "--steps", "1"]])
def test_help_and_argument_errors_do_not_import_torch(argv):
    code = ("import sys\nfrom fastvit_analysis.cli.main import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stderr.strip().splitlines()[-1] == "NO-TORCH", proc.stderr[-2000:]


def test_import_registers_the_models_with_timm_when_timm_is_imported():
    code = ("import sys, fastvit_analysis\nassert 'torch' not in sys.modules\n"
            "import timm\nprint(timm.is_model('alternet50_cifar'), timm.is_model('demo_vit'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.stdout.split() == ["True", "True"], proc.stderr[-2000:]

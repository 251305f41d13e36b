"""Run the attnlab command in-process and check its error lines."""

from attnlab.cli import main


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """``attnlab ARGS`` -> (exit status, stdout, stderr)."""
    try:
        code = main(list(args))
    except SystemExit as e:  # argparse's own errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, pattern: str) -> None:
    """Exit status 2, one line on stderr containing ``pattern``, no traceback."""
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert pattern in lines[0], lines[0]

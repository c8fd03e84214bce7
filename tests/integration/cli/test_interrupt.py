"""A Ctrl-C at any moment of a ``stockwire`` command ends it with status 130 and no traceback, the first
half second of imports included. Real interpreters; the signal is the real SIGINT."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# Interrupts the command while it imports ``module``: SIGINT to itself from inside the import.
_INTERRUPTED_WHILE_IMPORTING = textwrap.dedent(
    """
    import builtins, os, signal, sys
    import stockwire.cli as cli
    real_import = builtins.__import__
    def interrupting(name, *args, **kwargs):
        if name == sys.argv[1]:
            builtins.__import__ = real_import
            os.kill(os.getpid(), signal.SIGINT)
        return real_import(name, *args, **kwargs)
    builtins.__import__ = interrupting
    sys.exit(cli.main(["sources", "list"]))
    """
)


# The settings, the composition root, and a third-party library a command module pulls in.
@pytest.mark.parametrize("module", ["libs.config", "stockwire.stack", "sqlalchemy"])
def test_a_ctrl_c_while_the_command_loads_ends_it_quietly(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_WHILE_IMPORTING, module], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr


def test_the_entry_point_imports_nothing_the_interpreter_has_not_loaded_at_start() -> None:
    probe = (
        "import sys; before = set(sys.modules); import stockwire.cli; "
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    added = set(loaded.stdout.split()) - {"stockwire", "stockwire.cli", "__future__"}
    assert not added, f"imported before main() can catch a Ctrl-C: {sorted(added)}"

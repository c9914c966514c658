"""Every CLI command's function takes every option its decorators declare: a shared
option added to a decorator (as `--final` once was, beside commands written at the same
time) must reach each command, or the command fails with a TypeError when run."""

from __future__ import annotations

import inspect

import click
import pytest

from cli.main import cli

pytestmark = pytest.mark.unit


def commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            out += commands(command, (*path, name))
        else:
            out.append((" ".join((*path, name)), command))
    return out


def test_every_command_takes_every_option_it_declares() -> None:
    found = commands(cli)
    assert len(found) > 40, [name for name, _ in found]
    for name, command in found:
        assert command.callback is not None, name
        signature = inspect.signature(command.callback)
        if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
            continue
        declared = {p.name for p in command.params if p.name}
        assert declared <= set(signature.parameters), (name, declared - set(signature.parameters))

"""Every `--help` example parses with the command's real options and names grids that exist; the README's Python
example imports only public names."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click

import geoprom3e
from geoprom3e.cli import main
from geoprom3e.grid import get_grid

REPO = Path(__file__).resolve().parents[2]


def _commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield (*prefix, name), cmd
            yield from _commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


def test_help_examples_parse_and_name_real_grids():
    checked = 0
    for path, cmd in _commands(main):
        text = re.sub(r"\\\n\s*", " ", cmd.help or "")  # join continued lines
        for line in text.splitlines():
            line = line.strip()
            if not line.startswith("geoprom3e "):
                continue
            words = shlex.split(line.split("  #")[0])[1:]
            sub = main
            ctx = None
            while words and isinstance(sub, click.Group) and words[0] in sub.commands:
                sub = sub.commands[words.pop(0)]
            try:
                ctx = sub.make_context(" ".join(path), list(words), resilient_parsing=False)
            except click.BadParameter as exc:  # an example naming the user's own files (./scenes, photo.jpg)
                assert "does not exist" in str(exc), (line, exc)
                continue
            if "grid_name" in ctx.params and ctx.params["grid_name"]:
                get_grid(ctx.params["grid_name"])
            checked += 1
    assert checked >= 20


def test_readme_python_example_uses_public_names_only():
    text = (REPO / "README.md").read_text()
    block = text.split("## Python", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    imports = re.findall(r"^from (\S+) import (.+)$", block, flags=re.M)
    assert imports
    for module, names in imports:
        assert module == "geoprom3e", module
        for name in (n.strip() for n in names.split(",")):
            assert name in geoprom3e.__all__ and getattr(geoprom3e, name) is not None, name

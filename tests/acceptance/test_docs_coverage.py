"""Every command the documents show has exactly one recipe (so a command added to the docs
without a test fails here), every recipe is still documented, and the shipped designs all
shrink to valid small designs."""

from __future__ import annotations

import tomllib

import pytest

from doc_commands import ROOT, documented_commands, tokens
from recipes import RECIPES, recipe_for
from user_workspace import shrink_design

COMMANDS = documented_commands()


def test_documents_show_commands():
    assert len(COMMANDS) >= 20, [c.text for c in COMMANDS]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.where())
def test_every_documented_command_has_one_recipe(command):
    found = recipe_for(command.tokens)
    assert len(found) == 1, (
        f"{command.where()} shows `{command.text}`, which has {len(found)} recipes in tests/acceptance/recipes.py; "
        "add one that runs it with small settings")


def test_every_recipe_is_documented():
    documented = {c.tokens for c in COMMANDS}
    stale = [r.doc for r in RECIPES if tokens(r.doc) not in documented]
    assert not stale, f"recipes for commands no document shows (remove them or document the command): {stale}"


@pytest.mark.parametrize("recipe", [r for r in RECIPES if r.covered_by], ids=lambda r: r.doc[:50])
def test_commands_covered_elsewhere_are_run_there(recipe):
    script = next(w for w in tokens(recipe.doc) if "/" in w)
    assert script in (ROOT / recipe.covered_by).read_text(encoding="utf-8"), (
        f"{recipe.covered_by} is said to run `{recipe.doc}` but does not name {script}")
    assert recipe.why


def test_changed_commands_say_why():
    assert all(r.why for r in RECIPES if r.run), [r.doc for r in RECIPES if r.run and not r.why]


@pytest.mark.parametrize("path", sorted((ROOT / "designs").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_designs_shrink_to_valid_small_designs(path, tmp_path):
    import tomli_w

    from simstudy.study.design import load_design

    small = shrink_design(tomllib.loads(path.read_text(encoding="utf-8")))
    out = tmp_path / path.name
    out.write_text(tomli_w.dumps(small), encoding="utf-8")
    design = load_design(out)
    assert design.replicates == 2 and len(design.cells()) <= 4

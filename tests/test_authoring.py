"""Authoring help: the JSON Schema validates every committed hypothesis file, and `init`
scaffolds pass `validate` (and compile on their model)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from circuitcheck.authoring import hypothesis_schema
from circuitcheck.cli import main
from circuitcheck.plan.compile import compile_file
from tests.conftest import HYPOTHESES, VALID_FILE

COMMITTED = sorted(HYPOTHESES.rglob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = hypothesis_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("path", COMMITTED, ids=[str(p.relative_to(HYPOTHESES)) for p in COMMITTED])
def test_committed_hypothesis_files_validate_against_the_schema(validator, path):
    errors = sorted(validator.iter_errors(yaml.safe_load(path.read_text())), key=str)
    assert not errors, f"{path}: {errors[0].json_path}: {errors[0].message}"


def test_the_schema_rejects_what_the_loader_rejects(validator):
    data = yaml.safe_load(VALID_FILE)
    assert validator.is_valid(data)
    assert not validator.is_valid(data | {"modle": "trigram"})  # unknown key
    bad_claim = data["claims"][0] | {"kind": "no_such_kind"}
    assert not validator.is_valid(data | {"claims": [bad_claim]})
    bad_method = data["claims"][0] | {"method": "avg"}
    assert not validator.is_valid(data | {"claims": [bad_method]})


def test_schema_command_writes_the_schema(tmp_path, capsys):
    out = tmp_path / "hypothesis.schema.json"
    assert main(["schema", "-o", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written == hypothesis_schema()
    assert written["$schema"].endswith("/draft/2020-12/schema")
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == written


@pytest.mark.parametrize("model", ["trigram", "trigram-attn-only", "trigram-plain"])
def test_init_scaffold_validates_and_compiles(tmp_path, capsys, model):
    path = tmp_path / f"{model}.yaml"
    assert main(["init", "--model", model, "-o", str(path)]) == 0
    text = path.read_text()
    assert "# yaml-language-server: $schema=" in text and "blocks.0.attn.hook_pattern" in text
    assert ("mlp0" in text) == (model != "trigram-attn-only")
    assert main(["validate", str(path)]) == 0
    assert f"{path}: ok (2 claims, model '{model}')" in capsys.readouterr().out
    plan = compile_file(path)
    assert [c.claim_id for c in plan.claims] == ["head-necessary", "whole-model"]


def test_init_prints_to_stdout_and_refuses_to_overwrite(tmp_path, capsys):
    assert main(["init", "--model", "trigram"]) == 0
    assert capsys.readouterr().out.startswith("# Hypothesis file for model 'trigram'")
    existing = tmp_path / "mine.yaml"
    existing.write_text("keep me")
    assert main(["init", "--model", "trigram", "-o", str(existing)]) == 2
    assert capsys.readouterr().err.strip() == f"{existing} exists; pass --force to overwrite it"
    assert existing.read_text() == "keep me"
    assert main(["init", "--model", "trigram", "-o", str(existing), "--force"]) == 0


def test_init_with_an_unknown_model_is_one_line_and_its_fix(capsys):
    assert main(["init", "--model", "trigarm"]) == 2
    err = capsys.readouterr().err
    first, *rest = err.strip().splitlines()  # the error, then at most its fix
    assert first.startswith("no model 'trigarm'") and [r.startswith("  fix: ") for r in rest] in ([], [True])


def test_schema_to_an_unwritable_place_is_one_line(tmp_path, capsys):
    assert main(["schema", "-o", str(Path(tmp_path) / "missing" / "s.json")]) == 2
    err = capsys.readouterr().err
    assert "cannot write the schema" in err and len(err.strip().splitlines()) == 1

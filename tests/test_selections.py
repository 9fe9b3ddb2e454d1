"""Token-based position selections, dataset-named roles, the strings dataset and OV mappings."""

from __future__ import annotations

import pytest
import torch

from circuitcheck.data.batch import TokenBatch, next_tokens_of
from circuitcheck.errors import PlanError
from circuitcheck.plan.positions import selection_mask
from circuitcheck.spec.base import PositionSelection

TOKENS = torch.tensor([[0, 2, 4, 5], [1, 3, 4, 5], [1, 2, 4, 6]])
NAMES = ("A", "B", "C", "D", "Q", "T", "F")


def batch(**kw) -> TokenBatch:
    return TokenBatch(TOKENS, next_tokens_of(TOKENS), torch.zeros_like(TOKENS), {}, token_names=NAMES, **kw)


def mask(**sel) -> torch.Tensor:
    return selection_mask(PositionSelection(**sel), batch(), ("positions", "x"))


def test_tokens_by_name_and_id() -> None:
    assert mask(tokens=["C", "D"]).nonzero().tolist() == [[0, 1], [1, 1], [2, 1]]
    assert torch.equal(mask(tokens=["Q"]), mask(tokens=[4]))


def test_prefix_contains_and_lacks_are_causal() -> None:
    with_b = mask(prefix_contains=["B"], indices=[2])
    assert with_b[:, 2].tolist() == [False, True, True]
    assert mask(prefix_lacks=["B"], indices=[2])[:, 2].tolist() == [True, False, False]
    # the token at position 1 is not yet "present" at position 0
    assert mask(prefix_contains=["C"])[0].tolist() == [False, True, True, True]


def test_unknown_token_names_are_plan_errors_naming_the_vocabulary() -> None:
    with pytest.raises(PlanError, match="unknown token 'Z'.*A, B, C") as err:
        mask(tokens=["Z"])
    assert err.value.path == ("positions", "x", "tokens", 0)


def test_roles_are_checked_against_the_dataset() -> None:
    b = batch(role_names=("none", "A", "B"))
    with pytest.raises(PlanError, match="no role 'X'"):
        selection_mask(PositionSelection(role="X"), b, ("positions", "x"))


def test_strings_dataset_samples_the_cards_strings(tmp_path) -> None:
    from circuitcheck.data.registry import DataContext
    from circuitcheck.data.strings import StringsDataset

    card = {"task": {"vocab": list(NAMES), "strings": ["ACQT", "ADQF", "BCQF", "BDQT"]}}
    ctx = DataContext(card, tmp_path, 7, 4)
    a = StringsDataset(kind="strings", n_seqs=400, seed=1).build(ctx)
    b = StringsDataset(kind="strings", n_seqs=400, seed=1).build(ctx)
    assert torch.equal(a.tokens, b.tokens)
    words = {"".join(NAMES[t] for t in row) for row in a.tokens.tolist()}
    assert words == {"ACQT", "ADQF", "BCQF", "BDQT"}
    with pytest.raises(PlanError, match="not in the vocabulary"):
        StringsDataset(kind="strings", n_seqs=4, seed=1, strings=["AXQT"]).build(ctx)
    with pytest.raises(PlanError, match="no strings task"):
        StringsDataset(kind="strings", n_seqs=4, seed=1).build(DataContext({}, tmp_path, 7, 4))


def _ov(head: str, maps: dict, silent: list) -> float:
    from circuitcheck.claims.base import CompileContext
    from circuitcheck.claims.ov_mapping import OVMappingClaim
    from circuitcheck.zoo.load import load

    model = load("xor").model
    spec = OVMappingClaim.model_validate(
        dict(id="o", statement="s", kind="ov_mapping", head=head, maps=maps, silent=silent, threshold={"at_least": 1.0})
    )
    plan = spec.compile(CompileContext(model, batch(), {}, {}, ("claims", 0)))
    return plan.score(None).estimate  # type: ignore[arg-type]


def test_ov_mapping_reads_the_xor_construction() -> None:
    assert _ov("0.0", {"C": "T", "D": "F"}, ["A", "B", "Q"]) == 1.0
    assert _ov("0.1", {"C": "F", "D": "T"}, ["A", "B", "Q"]) == 1.0
    assert _ov("0.0", {"C": "F", "D": "F"}, []) == 0.5, "head 0 writes T for C, so C -> F must fail"
    assert _ov("0.0", {"C": "T"}, ["C"]) == 0.5, "C is not silent"

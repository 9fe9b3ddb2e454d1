"""A ``prompts`` dataset that mixes slot orders (IOI's ABBA and BABA, issue 12): roles per prompt, claims at a
role against plain TransformerLens hooks, ``refill`` per prompt, the refusals, and the sweep's draft.

Each role's position is found here from the prompt's words, not from ``batch.roles``: in a word-level prompt
"When X and Y went to the P , Z gave a O to", the subject is the name that repeats at 9 (Z), so A (the indirect
object) is whichever of 1 and 3 does not hold it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from circuitcheck.data.prompts import PromptsDataset, SlotRefill
from circuitcheck.errors import CircuitcheckError, PlanError
from tests.test_prompts_dataset import NAMES, SLOTS, VOCAB, WORDS, context, naive_ids, word_tokenizer

ABBA = "When {A} and {B} went to the {place}, {B} gave a {object} to"
BABA = "When {B} and {A} went to the {place}, {B} gave a {object} to"


def spec(**changes: object) -> PromptsDataset:
    fields: dict[str, object] = {
        "kind": "prompts",
        "n_seqs": 40,
        "seed": 3,
        "templates": [ABBA, BABA],
        "slots": SLOTS,
        "words": WORDS,
        "answer": "{A}",
        "counterfactual": "{B}",
    }
    return PromptsDataset.model_validate(fields | changes)


def where(row: list[int]) -> dict[str, int]:
    """Each role's position in a filled prompt, read from its words."""
    s1 = 1 if row[1] == row[9] else 3
    assert row[s1] == row[9] and row[4 - s1] != row[9]  # one of the first two names repeats at 9
    return {"A": 4 - s1, "B": s1, "place": 7, "B2": 9, "object": 12, "end": 13}


@pytest.fixture(scope="module")
def words_tok():
    return word_tokenizer()


# --- roles per prompt ------------------------------------------------------------------------------------------


def test_roles_sit_at_each_prompts_own_positions(words_tok):
    batch = spec(n_seqs=60).build(context(words_tok))
    assert batch.counterfactual is not None
    orders = set()
    for row, roles, nxt, cf in zip(
        batch.tokens.tolist(), batch.roles.tolist(), batch.next_token, batch.counterfactual, strict=True
    ):
        want = where(row)
        orders.add(want["A"])
        assert {batch.role_names[c]: p for p, c in enumerate(roles) if c} == want
        a, b = VOCAB[row[want["A"]]], VOCAB[row[want["B"]]]
        template = ABBA if want["A"] == 1 else BABA
        assert row == naive_ids(template.format(A=a, B=b, place=VOCAB[row[7]], object=VOCAB[row[12]]))
        assert nxt[-1] == row[want["A"]] and cf[-1] == row[want["B"]]  # answer {A}, counterfactual {B}
    assert orders == {1, 3}  # both orders drawn
    assert batch.role_mask("A")[:, 1].any() and batch.role_mask("A")[:, 3].any()


def test_one_order_keeps_the_draw_of_before(words_tok):
    """A dataset with one slot order draws exactly what it drew before mixing was allowed (pinned by its words)."""
    batch = spec(templates=[ABBA], n_seqs=3).build(context(words_tok))
    assert (batch.roles[:, 1] == batch.role_names.index("A")).all()
    assert (batch.roles[:, 3] == batch.role_names.index("B")).all()


@pytest.mark.parametrize("slots", [["A"], ["B"], ["B", "B2"], ["A", "B", "B2"]])
def test_refill_changes_each_prompts_own_slot_positions(words_tok, slots):
    batch = spec(n_seqs=60).build(context(words_tok))
    assert batch.refill is not None
    corrupted = batch.refill(slots, 7)
    for old, new in zip(batch.tokens.tolist(), corrupted.tolist(), strict=True):
        at = where(old)
        changed = {p for p, (x, y) in enumerate(zip(old, new, strict=True)) if x != y}
        assert changed == {at[s] for s in slots}
        fresh = [VOCAB[new[at[s]]] for s in slots]
        originals = {VOCAB[old[at["A"]]], VOCAB[old[at["B"]]]}
        assert set(fresh) <= set(NAMES) and not set(fresh) & originals and len(set(fresh)) == len(fresh)


@pytest.mark.parametrize(
    ("templates", "message", "fix"),
    [
        (
            [ABBA, "When {A} and {B} went to the {place}, {A} gave a {object} to"],
            r"template 1 fills the slot occurrences A, B, place, A2, object; template 0 fills A, B, place, B2, object "
            r"\(it lacks B2; it adds A2\)",
            "give template 1 the slots of template 0",
        ),
        (
            [
                ABBA,
                "When {B} and {A} went to the {place}, {B} gave a {object} to".replace("{object}", "{object} {object}"),
            ],
            r"it adds object2",
            "give template 1 the slots of template 0",
        ),
        (
            [ABBA, "When {B} and {A} went to the {place}, {B} gave a {object} to then"],
            "template 1 tokenizes to 15 tokens, template 0 to 14",
            "reword the templates",
        ),
    ],
)
def test_templates_with_other_roles_or_lengths_are_refused(words_tok, templates, message, fix):
    with pytest.raises(PlanError, match=message) as err:
        spec(templates=templates).build(context(words_tok))
    assert err.value.path == ("dataset", "templates", 1) and fix in (err.value.fix or "")


# --- claims at a role, against plain hooks ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory, words_tok) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("tiny-gpt2-mixed")
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=len(VOCAB),
        n_positions=32,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=0,
        initializer_range=0.2,
        eos_token_id=0,
    )
    GPT2LMHeadModel(cfg).save_pretrained(folder)
    words_tok.save_pretrained(folder)
    return folder


def hypothesis(model: Path, templates: list[str] = [ABBA, BABA]) -> dict:  # noqa: B006 (read, never changed)
    refill = {"scheme": "refill", "slots": ["A", "B", "B2"], "seed": 7}
    common = {"positions": "end", "metric": "logit_diff", "threshold": {"at_least": 0.1}}
    return {
        "version": 1,
        "name": "ioi-mixed",
        "model": str(model),
        "dataset": {
            "kind": "prompts",
            "n_seqs": 30,
            "seed": 3,
            "templates": templates,
            "slots": SLOTS,
            "words": WORDS,
            "answer": "{A}",
            "counterfactual": "{B}",
        },
        "positions": {"IO": {"role": "A"}, "S1": {"role": "B"}, "end": {"role": "end"}},
        "claims": [
            {
                "id": "P-head",
                "statement": "x",
                "kind": "activation_patching",
                "corruption": refill,
                "patch": ["0.1"],
                "patch_at": "IO",
            }
            | common,
            {
                "id": "P-resid",
                "statement": "x",
                "kind": "activation_patching",
                "corruption": refill,
                "patch": ["blocks.1.hook_resid_pre"],
                "patch_at": "IO",
            }
            | common,
            {
                "id": "A-zero",
                "statement": "x",
                "kind": "ablation",
                "mode": "necessity",
                "components": ["0.1"],
                "method": "zero",
                "ablate_at": "IO",
                "effect": "absolute_drop",
            }
            | common,
            {
                "id": "A-mean",
                "statement": "x",
                "kind": "ablation",
                "mode": "necessity",
                "components": ["0.1"],
                "method": "mean",
                "ablate_at": "IO",
                "effect": "absolute_drop",
            }
            | common,
            {
                "id": "M-end-to-IO",
                "statement": "x",
                "kind": "attention_mass",
                "head": "1.0",
                "queries": "end",
                "keys": "IO",
                "threshold": {"at_least": 0.1},
            },
            {  # scored at each prompt's own IO position: the prediction of the word after A
                "id": "A-last-at-IO",
                "statement": "x",
                "kind": "ablation",
                "mode": "necessity",
                "components": ["1.0"],
                "method": "zero",
                "ablate_at": "IO",
                "positions": "IO",
                "metric": "logprob",
                "effect": "absolute_drop",
                "threshold": {"at_least": 0.1},
            },
        ],
    }


def write_file(path: Path, doc: dict) -> Path:
    """``doc`` as YAML; through JSON first, so that shared sub-dicts are written out, not as anchors."""
    path.write_text(yaml.safe_dump(json.loads(json.dumps(doc)), sort_keys=False))
    return path


def test_claims_at_role_A_equal_plain_hooks_per_prompt(hf_folder, tmp_path):
    from circuitcheck.api import check
    from circuitcheck.plan.compile import compile_file

    path = write_file(tmp_path / "mixed.yaml", hypothesis(hf_folder))
    plan = compile_file(path)
    batch, model = plan.batch, plan.loaded.model
    rows = torch.arange(batch.n_seqs)
    a_at = torch.tensor([where(r)["A"] for r in batch.tokens.tolist()])
    assert set(a_at.tolist()) == {1, 3}
    assert batch.counterfactual is not None and batch.refill is not None
    ans, cf = batch.next_token[:, -1], batch.counterfactual[:, -1]
    z, resid = "blocks.0.attn.hook_z", "blocks.1.hook_resid_pre"

    def diff(logits: torch.Tensor) -> float:
        last = logits[:, -1].double()
        return float((last[rows, ans] - last[rows, cf]).mean())

    def write_at(at: torch.Tensor, value: torch.Tensor, head: int | None = None):
        def hook(act: torch.Tensor, hook: object) -> torch.Tensor:
            act = act.clone()
            if head is None:
                act[rows, at] = value[rows, at]
            else:
                act[rows, at, head] = value[rows, at, head]
            return act

        return hook

    with torch.no_grad():
        _, cache = model.run_with_cache(batch.tokens)
        refilled = batch.refill(["A", "B", "B2"], 7)
        zeros = torch.zeros_like(cache[z])
        mean = cache[z].mean(0, keepdim=True).expand_as(cache[z])
        naive = {
            "clean": diff(model(batch.tokens)),
            "corrupted": diff(model(refilled)),
            "P-head": diff(model.run_with_hooks(refilled, fwd_hooks=[(z, write_at(a_at, cache[z], 1))])),
            "P-resid": diff(model.run_with_hooks(refilled, fwd_hooks=[(resid, write_at(a_at, cache[resid]))])),
            "A-zero": diff(model.run_with_hooks(batch.tokens, fwd_hooks=[(z, write_at(a_at, zeros, 1))])),
            "A-mean": diff(model.run_with_hooks(batch.tokens, fwd_hooks=[(z, write_at(a_at, mean, 1))])),
            "A-mean-at-1": diff(model.run_with_hooks(batch.tokens, fwd_hooks=[(z, write_at(a_at * 0 + 1, mean, 1))])),
        }
        pattern = model.run_with_cache(batch.tokens, names_filter="blocks.1.attn.hook_pattern")[1][
            "blocks.1.attn.hook_pattern"
        ]
    z1, after_a = "blocks.1.attn.hook_z", batch.tokens[rows, a_at + 1]
    with torch.no_grad():
        at_a = {
            "full": model(batch.tokens)[rows, a_at].double().log_softmax(-1)[rows, after_a],
            "ablated": model.run_with_hooks(batch.tokens, fwd_hooks=[(z1, write_at(a_at, zeros, 0))])[rows, a_at]
            .double()
            .log_softmax(-1)[rows, after_a],
        }
    end_to_a = float(pattern[rows, 0, -1, a_at].double().mean())
    end_to_1 = float(pattern[rows, 0, -1, 1].double().mean())
    # a reading that took role A at one fixed position would differ by more than the tolerance
    assert abs(naive["A-mean"] - naive["A-mean-at-1"]) > 1e-3 and abs(end_to_a - end_to_1) > 1e-3

    claims = check(path).claims
    for cid in ("P-head", "P-resid"):
        assert claims[cid].details["metric_clean"] == pytest.approx(naive["clean"], abs=1e-5)
        assert claims[cid].details["metric_corrupted"] == pytest.approx(naive["corrupted"], abs=1e-5)
        assert claims[cid].details["metric_patched"] == pytest.approx(naive[cid], abs=1e-5)
    for cid in ("A-zero", "A-mean"):
        assert claims[cid].details["metric_full"] == pytest.approx(naive["clean"], abs=1e-5)
        assert claims[cid].details["metric_ablated"] == pytest.approx(naive[cid], abs=1e-5)
    assert claims["M-end-to-IO"].estimate == pytest.approx(end_to_a, abs=1e-5)
    for run, values in at_a.items():
        assert claims["A-last-at-IO"].details[f"metric_{run}"] == pytest.approx(float(values.mean()), abs=1e-5)


def per_sequence_values(path: Path) -> tuple[torch.Tensor, dict[str, dict[str, torch.Tensor]]]:
    """The prompts' template choices, and per claim its per-sequence totals."""
    from circuitcheck.plan.compile import compile_file
    from circuitcheck.run.execute import run_file

    plan = compile_file(path)
    result = run_file(plan)
    totals = {}
    for claim in result.claims:
        assert claim.measurement.stats is not None
        totals[claim.claim_id] = dict(claim.measurement.stats.per_seq)
    assert isinstance(plan.batch.refill, SlotRefill)
    return torch.tensor(plan.batch.refill.which), totals


def test_every_claim_on_mixed_prompts_is_the_splice_of_one_order_runs(hf_folder, tmp_path):
    """With one seed, templates [ABBA, BABA], [ABBA, ABBA] and [BABA, BABA] draw the same template choice and words
    for every prompt (A and B draw from lists of their own: names that share a list are dealt in the order of
    template 0); so a per-prompt-correct claim's per-sequence totals on the mixed data are the ABBA-only run's
    where the prompt is ABBA and the BABA-only run's elsewhere. A claim that read role A at one position would
    take the ABBA reading for the BABA prompts."""
    doc = hypothesis(hf_folder)
    doc["dataset"]["slots"] = SLOTS | {"A": "io_names", "B": "s_names"}
    doc["dataset"]["words"] = {
        "io_names": NAMES[:4],
        "s_names": NAMES[4:],
        "places": WORDS["places"],
        "objects": WORDS["objects"],
    }
    doc["claims"] = [c for c in doc["claims"] if c["id"] != "A-mean"]  # a mean over prompts differs per dataset
    doc["claims"].append(
        {
            "id": "PP-zero",
            "statement": "x",
            "kind": "path_patching",
            "sender": "0.1",
            "sender_at": "IO",
            "receivers": ["1.0.v", "1.1.k"],
            "method": "zero",
            "positions": "end",
            "metric": "logit_diff",
            "effect": "absolute_drop",
            "threshold": {"at_least": 0.1},
        }
    )
    runs = {}
    for name, templates in {"mixed": [ABBA, BABA], "abba": [ABBA, ABBA], "baba": [BABA, BABA]}.items():
        doc["dataset"]["templates"] = templates
        runs[name] = per_sequence_values(write_file(tmp_path / f"{name}.yaml", doc))
    which = runs["mixed"][0]
    assert torch.equal(which, runs["abba"][0]) and 0 < int(which.sum()) < len(which)
    baba = (which == 1).unsqueeze(-1)
    compared = 0
    for cid, mixed in runs["mixed"][1].items():
        for key, got in mixed.items():
            abba, other = runs["abba"][1][cid][key], runs["baba"][1][cid][key]
            want = torch.where(baba if got.dim() > 1 else baba.squeeze(-1), other, abba)
            assert torch.allclose(got.double(), want.double(), atol=1e-5), (cid, key)
            compared += int(not torch.allclose(abba.double(), other.double(), atol=1e-3))
    assert compared >= 4  # the orders differ: a claim that ignored them would fail the splice


def test_a_bad_mixed_template_is_pinned_to_its_line_with_the_fix(hf_folder, tmp_path):
    from circuitcheck.plan.compile import compile_file

    bad = "When {B} and {A} went to the {place}, {A} gave a {object} to"
    path = write_file(tmp_path / "bad.yaml", hypothesis(hf_folder, [ABBA, bad]))
    with pytest.raises(CircuitcheckError) as err:
        compile_file(path)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), start=1) if "{A} gave" in text)
    text = str(err.value)
    assert text.startswith(f"{path}:{line}:") and "it lacks B2; it adds A2" in text
    assert "fix: give template 1 the slots of template 0" in text


# --- the sweep's draft -----------------------------------------------------------------------------------------


def test_sweep_draft_on_mixed_data_names_cells_by_index_and_says_which_roles(tmp_path):
    """ioi-mini was trained on both orders; a sweep of it on mixed prompts drafts cells as positions."""
    from circuitcheck.api import sweep

    repo = Path(__file__).resolve().parents[1]
    doc = yaml.safe_load((repo / "hypotheses" / "ioi-mini.yaml").read_text())
    abba = doc["dataset"]["templates"][0]
    doc["model"] = str(repo / "models" / "ioi-mini")
    doc["dataset"] |= {"n_seqs": 40, "templates": [abba, abba.replace("{A} and {B}", "{B} and {A}")]}
    doc["claims"] = [c for c in doc["claims"] if c["id"] == "P1-patch-name-mover"]
    doc["claims"][0]["corruption"]["slots"] = ["A"]  # A alone: position 1 holds it in half the prompts, 3 in the rest
    doc.pop("circuits", None)
    path = write_file(tmp_path / "mixed.yaml", doc)
    report = sweep(path, "P1-patch-name-mover", "resid", top_k=40, out=tmp_path / "out", write=False)
    assert report.draft is not None
    draft = yaml.safe_load(report.draft)
    at = {claim["patch_at"]: claim["statement"] for claim in draft["claims"]}
    assert not set(at) & set(doc["positions"])  # a cell is one absolute position, never one of the file's roles
    positions = {int(name.rsplit("_", 1)[1]): statement for name, statement in at.items()}
    assert all(draft["positions"][f"sweep_at_{p}"] == {"indices": [p]} for p in positions)
    assert {1, 3} & set(positions)  # the name positions, which hold A in some prompts and B in others
    for p, statement in positions.items():
        assert ("not one role: on the sweep's data it holds" in statement) == (p in (1, 3))
        if p in (1, 3):
            held = statement.split("holds ")[1].split(" of ")[0]
            assert sorted(part.split(" in ")[0] for part in held.split(", ")) == ["A", "B"]

"""The copy + bigram task behind the framework model: roles say how each next token was made."""

from __future__ import annotations

import torch

from circuitcheck.data.copy_bigram import ROLE_NAMES, generate_copy_bigram, successor


def test_roles_describe_the_next_token() -> None:
    batch = generate_copy_bigram(300, 16, 20, 0.35, 0.35, seed=5)
    toks, roles = batch.tokens, batch.roles
    bigram = roles[:, :-1] == ROLE_NAMES.index("bigram")
    assert torch.equal(toks[:, 1:][bigram], successor(toks[:, :-1], 20)[bigram])
    for b, p in (roles == ROLE_NAMES.index("copy")).nonzero().tolist():
        assert toks[b, p + 1] in toks[b, : p + 1]
    assert (roles[:, -1] == 0).all() and (batch.next_token[:, -1] == -1).all()
    share = {name: float((roles[:, :-1] == code).double().mean()) for code, name in enumerate(ROLE_NAMES) if code}
    assert abs(share["bigram"] - 0.35) < 0.02 and abs(share["copy"] - 0.35) < 0.02


def test_seeded() -> None:
    a, b = (generate_copy_bigram(10, 8, 20, 0.3, 0.3, seed=1) for _ in range(2))
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.roles, b.roles)

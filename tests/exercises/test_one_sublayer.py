"""A mistake made in one sublayer only is named with that sublayer, in every practical: the
LayerNorm inside the residual (x + LayerNorm(Sublayer(x))) of the feed-forward alone, of the
attention alone, or of the decoder's cross-attention alone; in the Llama block, the residual
that adds the normalised input in one sublayer. Each student file is written the way
students write it, not as the catalogue plants it."""

import pytest

from .helpers import assert_only_hint, check_here, plant

STUDENTS = {
    ("encoder", "norm-inside-residual-feed-forward"): {
        "x = self.gamma2 * self.norm(x + self.dropout(self.feed_forward(x))) + self.beta2": (
            "x = self.gamma2 * self.norm(self.dropout(self.feed_forward(x))) + self.beta2 + x"
        ),
    },
    ("encoder", "norm-inside-residual-attention"): {
        "x = self.gamma1 * self.norm(x + attended) + self.beta1": (
            "x = x + (self.gamma1 * self.norm(attended) + self.beta1)"
        ),
    },
    ("attention", "norm-inside-residual-feed-forward"): {
        "return self.norm2(x + self.dropout(self.linear_net(x)))": (
            "return self.norm2(self.dropout(self.linear_net(x))) + x"
        ),
    },
    ("attention", "norm-inside-residual-attention"): {
        "x = self.norm1(x + self.dropout(self.self_attn(x, mask=mask)))": (
            "attended = self.self_attn(x, mask=mask)\n"
            "        x = x + self.norm1(self.dropout(attended))"
        ),
    },
    ("decoder", "norm-inside-residual-cross-attention"): {
        "return self.norm2(x + self.dropout2(attended))": (
            "return self.norm2(self.dropout2(attended)) + x"
        ),
    },
    ("decoder", "norm-inside-residual-self-attention"): {
        "return self.norm1(x + self.dropout1(self.self_attn(x, mask=tgt_mask)))": (
            "out = self.dropout1(self.self_attn(x, mask=tgt_mask))\n"
            "        return x + self.norm1(out)"
        ),
    },
    ("decoder", "norm-inside-residual-feed-forward"): {
        "return self.norm3(x + self.dropout3(self.feed_forward(x)))": (
            "return x + self.norm3(self.dropout3(self.feed_forward(x)))"
        ),
    },
    ("llama", "residual-of-normalised-feed-forward"): {
        "return h + self.feed_forward(self.norm2(h))": (
            "normed = self.norm2(h)\n        return normed + self.feed_forward(normed)"
        ),
    },
    ("llama", "residual-of-normalised-attention"): {
        "h = x + self.self_attn(self.norm1(x))": (
            "x = self.norm1(x)\n        h = self.self_attn(x) + x"
        ),
    },
}


@pytest.mark.parametrize("case", STUDENTS, ids="/".join)
def test_a_mistake_in_one_sublayer_names_that_sublayer(tmp_path, case):
    name, mistake = case
    path = plant(tmp_path / f"{name}.py", name, STUDENTS[case])
    problems, verdicts = check_here(name, path)
    assert problems == []
    assert_only_hint(name, verdicts, mistake)

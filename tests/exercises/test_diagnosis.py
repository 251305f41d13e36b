"""Each mistake of the catalogue, planted into a copy of the solution, gets its own hint only.

Two sets of plantings: the catalogue's own substitutions (so every entry is covered), and
mistakes written the way students write them, differently from the catalogue's code (a
``(max_len, 1, d_model)`` table, ``-1e9`` instead of ``-inf``, ``weights * mask``...), which
the checker must still recognise from the numbers alone.
"""

import pytest

from attnlab.exercises.core import Mistake
from attnlab.exercises.registry import practical

from .helpers import assert_only_hint, check_here, plant

ENCODER = practical("encoder")
HINTS = {m.name: m.hint for m in ENCODER.mistakes}


def catalogue_changes(mistake: Mistake) -> dict[str, str]:
    return dict(mistake.broken.changes)


def test_the_catalogue_has_twelve_mistakes_or_more_with_distinct_hints():
    assert len(ENCODER.mistakes) >= 12
    assert len(set(HINTS.values())) == len(HINTS)
    part_names = {p.name for p in ENCODER.parts}
    assert all(m.part in part_names for m in ENCODER.mistakes)


def test_the_solution_passes_every_part(tmp_path):
    path = plant(tmp_path / "encoder.py", "encoder", {})
    problems, verdicts = check_here("encoder", path)
    assert problems == []
    assert [v["status"] for v in verdicts.values()] == ["pass"] * len(ENCODER.parts)


@pytest.mark.parametrize("mistake", ENCODER.mistakes, ids=lambda m: m.name)
def test_a_planted_catalogue_mistake_gets_its_own_hint(tmp_path, mistake):
    path = plant(tmp_path / "encoder.py", "encoder", catalogue_changes(mistake))
    problems, verdicts = check_here("encoder", path)
    assert problems == []
    assert_only_hint("encoder", verdicts, mistake.name)


STUDENT_STYLE = {
    "no-scaling": {
        "q @ k.transpose(-2, -1) / math.sqrt(d_k)": "torch.matmul(q, k.transpose(-1, -2))"
    },
    "scaled-by-d_k": {"/ math.sqrt(d_k)": "/ float(d_k)"},
    "queries-keys-swapped": {
        "q @ k.transpose(-2, -1) / math.sqrt(d_k)": (
            "torch.matmul(k, q.transpose(-1, -2)) / math.sqrt(d_k)"
        )
    },
    "one-projection-for-qkv": {
        "return split_heads(self.w_q(x)), split_heads(self.w_k(x)), split_heads(self.w_v(x))": (
            "q = split_heads(self.w_q(x))\n        return q, q, q"
        )
    },
    "norm-inside-residual": {
        "x = self.gamma1 * self.norm(x + attended) + self.beta1": (
            "x = self.gamma1 * self.norm(attended) + self.beta1 + x"
        ),
        "x = self.gamma2 * self.norm(x + self.dropout(self.feed_forward(x))) + self.beta2": (
            "x = x + (self.norm(self.dropout(self.feed_forward(x))) * self.gamma2 + self.beta2)"
        ),
    },
    "softmax-wrong-axis": {
        'scores.masked_fill(~mask, float("-inf"))': "scores.masked_fill(mask == 0, -1e9)",
        "torch.softmax(scores, dim=-1)": "scores.softmax(dim=2)",
    },
    "mask-inverted": {
        'scores.masked_fill(~mask, float("-inf"))': "scores.masked_fill(mask == 1, -1e9)"
    },
    "mask-after-softmax": {
        'scores = scores.masked_fill(~mask, float("-inf"))': "pass",
        "weights = self.dropout(weights)": (
            "weights = self.dropout(weights * mask if mask is not None else weights)"
        ),
    },
    "dropout-in-eval": {
        "import math": "import math\n\nimport torch.nn.functional as F",
        "weights = self.dropout(weights)": "weights = F.dropout(weights, 0.1)",
    },
    "positions-on-batch-axis": {
        "T = x.size(1)": "T = self.max_len",
        "return x + pe.unsqueeze(0).to(x.dtype)": "return x + pe.unsqueeze(1)[: x.size(0)]",
    },
    "heads-split-wrong": {
        "t.view(B, T, self.num_heads, self.d_k).transpose(1, 2)": (
            "t.reshape(B, self.num_heads, T, -1)"
        )
    },
    "variance-unbiased": {
        "var = x.var(dim=-1, keepdim=True, unbiased=False)": (
            "var = ((x - mean) ** 2).sum(-1, keepdim=True) / (x.size(-1) - 1)"
        )
    },
    "scaled-by-sqrt-d_model": {"/ math.sqrt(d_k)": "/ (q.size(1) * q.size(-1)) ** 0.5"},
    "frequencies-inverted": {
        "angle = position / 10000 ** (two_i / self.d_model)": (
            "angle = position * torch.pow(10000.0, two_i / self.d_model)"
        )
    },
    "softmax-over-heads": {"torch.softmax(scores, dim=-1)": "scores.softmax(1)"},
    "mask-filled-with-zero": {
        'scores.masked_fill(~mask, float("-inf"))': "scores.masked_fill(mask == 0, 0)"
    },
    "heads-merged-wrong": {
        "heads.transpose(1, 2).reshape(B, T, self.d_model)": "heads.contiguous().view(B, T, -1)"
    },
    "gelu-not-relu": {"torch.relu(self.linear1(x))": "torch.nn.GELU()(self.linear1(x))"},
    "no-residual-feed-forward": {
        "x = self.gamma2 * self.norm(x + self.dropout(self.feed_forward(x))) + self.beta2": (
            "ff = self.dropout(self.feed_forward(x))\n"
            "        x = self.gamma2 * self.norm(ff) + self.beta2"
        )
    },
    "cls-appended": {
        "torch.cat([cls, x], dim=1)": "torch.cat((x, self.cls_token.repeat(x.size(0), 1, 1)), 1)"
    },
    "sin-cos-concatenated": {
        "pe[:, 0::2] = torch.sin(angle)\n        pe[:, 1::2] = torch.cos(angle)": (
            "pe = torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)"
        )
    },
    "positions-from-one": {
        "position = torch.arange(T, device=x.device).unsqueeze(1)": (
            "position = torch.arange(T, device=x.device).unsqueeze(1) + 1"
        )
    },
    "scores-multiplied": {"/ math.sqrt(d_k)": "* d_k**0.5"},
    "norm-eps-outside-sqrt": {
        "return (x - mean) / torch.sqrt(var + 1e-5)": (
            "return (x - mean) / (x.std(dim=-1, keepdim=True, unbiased=False) + 1e-5)"
        )
    },
    "norm-no-eps": {"return (x - mean) / torch.sqrt(var + 1e-5)": "return (x - mean) / var**0.5"},
    "divided-by-variance": {
        "return (x - mean) / torch.sqrt(var + 1e-5)": (
            "return (x - mean) / (x.var(-1, keepdim=True, unbiased=False) + 1e-5)"
        )
    },
    "no-gain-bias": {
        "x = self.gamma1 * self.norm(x + attended) + self.beta1": "x = self.norm(attended + x)",
        "x = self.gamma2 * self.norm(x + self.dropout(self.feed_forward(x))) + self.beta2": (
            "x = self.norm(self.dropout(self.feed_forward(x)) + x)"
        ),
    },
    "gain-bias-reused": {
        "x = self.gamma2 * self.norm(x + self.dropout(self.feed_forward(x))) + self.beta2": (
            "x = self.norm(x + self.dropout(self.feed_forward(x))) * self.gamma1 + self.beta1"
        )
    },
    "cls-column-appended": {
        "mask = torch.cat([cls_column, mask], dim=-1)": (
            "mask = torch.nn.functional.pad(mask, (0, 1), value=True)"
        )
    },
    "no-positional-encoding": {
        "x = self.add_positional_encoding(self.concat_cls(x))": (
            "x = torch.cat([self.cls_token.expand(x.size(0), -1, -1), x], 1)"
        )
    },
    "layers-not-chained": {
        "for layer in self.layers:\n            x = layer(x, mask)\n        return x": (
            "outputs = [layer(x, mask) for layer in self.layers]\n        return outputs[-1]"
        )
    },
}


@pytest.mark.parametrize("mistake", STUDENT_STYLE)
def test_a_mistake_written_another_way_is_recognised(tmp_path, mistake):
    path = plant(tmp_path / "encoder.py", "encoder", STUDENT_STYLE[mistake])
    problems, verdicts = check_here("encoder", path)
    assert problems == []
    assert_only_hint("encoder", verdicts, mistake)


def test_the_unbiased_std_gets_the_hint_that_names_torch_std(tmp_path):
    path = plant(
        tmp_path / "encoder.py",
        "encoder",
        {
            "return (x - mean) / torch.sqrt(var + 1e-5)": (
                "return (x - mean) / (x.std(dim=-1, keepdim=True) ** 2 + 1e-5) ** 0.5"
            )
        },
    )
    _, verdicts = check_here("encoder", path, ("TransformerEncoderLayer.norm",))
    verdict = verdicts["TransformerEncoderLayer.norm"]
    assert verdict["mistake"] == "variance-unbiased" and "torch.std" in verdict["message"]


@pytest.mark.parametrize(
    "norm",
    [
        "torch.nn.functional.layer_norm(x, x.shape[-1:], eps=1e-5)",
        "(x - x.mean(-1, keepdim=True))"
        " * torch.rsqrt(x.var(-1, correction=0, keepdim=True) + 1e-5)",
    ],
)
def test_a_layer_norm_written_another_way_passes_on_rows_of_small_variance(tmp_path, norm):
    # the rows of scale 0.003 tell eps's place apart, but must not fail a correct LayerNorm
    path = plant(
        tmp_path / "encoder.py",
        "encoder",
        {"return (x - mean) / torch.sqrt(var + 1e-5)": f"return {norm}"},
    )
    _, verdicts = check_here("encoder", path, ("TransformerEncoderLayer.norm",))
    assert verdicts["TransformerEncoderLayer.norm"]["status"] == "pass"


def test_an_unknown_mistake_is_a_plain_failure_with_the_largest_difference(tmp_path):
    path = plant(tmp_path / "encoder.py", "encoder", {"torch.relu(": "torch.tanh("})
    _, verdicts = check_here("encoder", path, ("TransformerEncoderLayer.feed_forward",))
    verdict = verdicts["TransformerEncoderLayer.feed_forward"]
    assert verdict["status"] == "fail" and verdict["mistake"] is None
    assert "largest difference" in verdict["message"]


def test_a_shape_error_names_both_shapes(tmp_path):
    path = plant(tmp_path / "encoder.py", "encoder", {"torch.cat([cls, x], dim=1)": "x"})
    _, verdicts = check_here("encoder", path, ("TransformerEncoder.concat_cls",))
    assert verdicts["TransformerEncoder.concat_cls"]["message"] == (
        "the output has shape (3, 7, 12), expected (3, 8, 12)"
    )


def test_an_exception_names_its_type_and_the_students_line(tmp_path):
    path = plant(tmp_path / "encoder.py", "encoder", {"mean = x.mean(": "mean = x.mea("})
    _, verdicts = check_here("encoder", path, ("TransformerEncoderLayer.norm",))
    message = verdicts["TransformerEncoderLayer.norm"]["message"]
    assert message.startswith("raised AttributeError") and "encoder.py, line" in message

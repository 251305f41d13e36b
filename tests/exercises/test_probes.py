"""Code whose eval-mode outputs are right but that would not train: the checker's probes
(attnlab.exercises.probes) name an input changed in place, a backward pass broken by an
in-place operation, a gradient cut from the graph, and dropout that is missing."""

import pytest

from attnlab.exercises.registry import practical

from .helpers import check_here, plant

ATTENTION = "TransformerEncoderLayer.self_attention"
_SCALE = "scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)"
_SOFTMAX = "weights = torch.softmax(scores, dim=-1)"


def message(name: str, path, part: str) -> str:
    verdict = check_here(name, path, (part,))[1][part]
    assert verdict["status"] == "fail", verdict
    return verdict["message"]


def test_an_input_scaled_in_place_is_named_with_its_shape(tmp_path):
    """q /= sqrt(d_k) changes the caller's q: the second call of the part scales it twice."""
    changes = {_SCALE: "q /= math.sqrt(d_k)\n        scores = q @ k.transpose(-2, -1)"}
    path = plant(tmp_path / "encoder.py", "encoder", changes)
    assert message("encoder", path, ATTENTION) == (
        "it overwrites a tensor it was given, of shape (3, 2, 7, 6), in place (+=, /=, "
        "masked_fill_, ...): its caller may still need it, and so may autograd; compute a new "
        "tensor instead (x = x + ...)"
    )


def test_an_in_place_residual_sum_is_named_even_when_the_values_are_right(tmp_path):
    attend = "x = self.norm1(x + self.dropout(self.self_attn(x, mask=mask)))"
    changes = {attend: "x += self.dropout(self.self_attn(x, mask=mask))\n        x = self.norm1(x)"}
    path = plant(tmp_path / "attention.py", "attention", changes)
    assert message("attention", path, "EncoderBlock.forward").startswith(
        "it overwrites a tensor it was given, of shape (2, 5, 12), in place"
    )


def test_an_in_place_change_of_the_softmax_output_breaks_the_backward_pass(tmp_path):
    """A NaN guard written in place: right numbers, but softmax's backward needs its output."""
    path = plant(
        tmp_path / "encoder.py",
        "encoder",
        {_SOFTMAX: f"{_SOFTMAX}\n        weights.nan_to_num_(0.0)"},
    )
    assert message("encoder", path, ATTENTION) == (
        "the backward pass fails: an in-place operation (+=, mul_, masked_fill_, "
        "ReLU(inplace=True), ...) changed a tensor that autograd needs (the output of "
        "Softmax); use the operation that returns a new tensor"
    )


def test_a_detached_tensor_is_named_by_the_parameter_no_gradient_reaches(tmp_path):
    changes = {"self.dropout(self.w_o(merged))": "self.dropout(self.w_o(merged.detach()))"}
    path = plant(tmp_path / "encoder.py", "encoder", changes)
    assert message("encoder", path, "TransformerEncoderLayer.forward") == (
        "the outputs are right, but no gradient reaches TransformerEncoderLayer.w_q.weight: "
        "something cuts it from the graph (.detach(), .data, .item(), torch.no_grad(), NumPy)"
    )


def test_missing_dropout_is_named_from_two_calls_in_train_mode(tmp_path):
    path = plant(tmp_path / "encoder.py", "encoder", {"weights = self.dropout(weights)": "pass"})
    assert message("encoder", path, ATTENTION) == (
        "dropout is missing: in train mode two calls give the same outputs, where the "
        "reference's differ (dropout acts in train mode only, e.g. self.dropout(...))"
    )


def test_missing_dropout_is_found_behind_the_given_classes_own_dropout(tmp_path):
    """The given FeedForward has dropout of its own: it stays off in train mode, so that the
    block's missing dropout3 is named, in the block and in the whole layer."""
    block = "return self.norm3(x + self.dropout3(self.feed_forward(x)))"
    path = plant(
        tmp_path / "decoder.py", "decoder", {block: "return self.norm3(self.feed_forward(x) + x)"}
    )
    expected = hint("decoder", "no-dropout-feed-forward")
    _, verdicts = check_here("decoder", path)
    for part in ("DecoderLayer.feed_forward_block", "DecoderLayer.forward"):
        assert verdicts[part]["message"] == expected, verdicts[part]


def hint(name: str, mistake: str) -> str:
    return next(m.hint for m in practical(name).mistakes if m.name == mistake)


def test_a_dropout_left_out_of_a_whole_layer_is_named_behind_the_attentions_dropout(tmp_path):
    """The attention weights' dropout makes two train-mode calls differ all the same: the
    layer is run beside the variant without the dropout, from the same random state."""
    changes = {
        "        attended = self.dropout(self.w_o(merged))\n": "",
        "self.norm(x + attended)": "self.norm(self.w_o(merged) + x)",
    }
    path = plant(tmp_path / "encoder.py", "encoder", changes)
    _, verdicts = check_here("encoder", path)
    failing = {p: v["message"] for p, v in verdicts.items() if v["status"] != "pass"}
    expected = hint("encoder", "no-dropout-attention-output")
    assert failing == {
        "TransformerEncoderLayer.forward": expected,
        "TransformerEncoder.forward": expected,
    }


def test_both_dropouts_left_out_of_the_encoder_block_are_named_together(tmp_path):
    changes = {
        "x = self.norm1(x + self.dropout(self.self_attn(x, mask=mask)))": (
            "x = self.norm1(self.self_attn(x, mask=mask) + x)"
        ),
        "return self.norm2(x + self.dropout(self.linear_net(x)))": (
            "return self.norm2(x + self.linear_net(x))"
        ),
    }
    path = plant(tmp_path / "attention.py", "attention", changes)
    first = hint("attention", "no-dropout-attention-output")
    second = hint("attention", "no-dropout-feed-forward-output")
    assert message("attention", path, "EncoderBlock.forward") == (
        f"two mistakes: {first}; and {second}"
    )


def test_a_dropout_left_out_of_a_decoder_layer_written_inline_is_named(tmp_path):
    """The blocks are right, but forward does the self-attention itself, without dropout1."""
    changes = {
        "x = self.self_attention_block(x, tgt_mask)": (
            "x = self.norm1(x + self.self_attn(x, mask=tgt_mask))"
        )
    }
    path = plant(tmp_path / "decoder.py", "decoder", changes)
    _, verdicts = check_here("decoder", path)
    failing = {p: v["message"] for p, v in verdicts.items() if v["status"] != "pass"}
    assert failing == {"DecoderLayer.forward": hint("decoder", "no-dropout-self-attention")}


# Correct code written another way, which must pass: the attention's output dropout drawn
# by hand (torch.rand_like, not the reference's bernoulli_: no mistake can be named from the
# numbers), and the weights' dropout drawn by hand with a NaN guard out of place.
_DRAWN_BY_HAND = {
    "output-dropout": {
        "attended = self.dropout(self.w_o(merged))": (
            "attended = self.w_o(merged)\n"
            "        if self.training:\n"
            "            keep = torch.rand_like(attended) >= self.dropout.p\n"
            "            attended = attended * keep / (1 - self.dropout.p)"
        ),
    },
    "weights-dropout-and-nan-guard": {
        "weights = self.dropout(weights)": (
            "if self.training:\n"
            "            keep = torch.rand_like(weights) >= self.dropout.p\n"
            "            weights = weights * keep / (1 - self.dropout.p)\n"
            "        weights = weights.nan_to_num(0.0)"
        ),
    },
}


@pytest.mark.parametrize("changes", _DRAWN_BY_HAND.values(), ids=list(_DRAWN_BY_HAND))
def test_correct_code_with_its_own_dropout_passes(tmp_path, changes):
    path = plant(tmp_path / "encoder.py", "encoder", changes)
    _, verdicts = check_here("encoder", path)
    assert {v["status"] for v in verdicts.values()} == {"pass"}, verdicts


def test_a_float_cast_inside_the_code_is_caught_with_float64_inputs(tmp_path):
    """.float() is a no-op on float32 inputs: with float64 ones it breaks the next matmul."""
    changes = {_SOFTMAX: "weights = torch.softmax(scores.float(), dim=-1)"}
    path = plant(tmp_path / "encoder.py", "encoder", changes)
    text = message("encoder", path, ATTENTION)
    assert text.startswith("with float64 inputs and weights: raised RuntimeError: "), text
    assert "(encoder.py, line " in text


def test_an_output_cast_to_float32_is_named_with_both_dtypes(tmp_path):
    changes = {"return x + pe.unsqueeze(0).to(x.dtype)": "return (x + pe.unsqueeze(0)).float()"}
    path = plant(tmp_path / "encoder.py", "encoder", changes)
    assert message("encoder", path, "PositionalEncoding.forward") == (
        "with float64 inputs and weights, the output has dtype torch.float32, expected "
        "torch.float64"
    )

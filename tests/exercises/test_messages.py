"""Mistakes that are not the Transformer's but Python's or PyTorch's: each is one clear line
that says what was observed (a dtype, a ``None``, a ``sys.exit``, a renamed class), never a
traceback nor a screenful."""

from attnlab.exercises.compare import where

from ..cli_helpers import assert_one_line_error, run_cli
from .helpers import check_here, plant

NORM = "TransformerEncoderLayer.norm"
ATTENTION = "TransformerEncoderLayer.self_attention"
LAYER = "TransformerEncoderLayer.forward"
_NORM_BODY = "        mean = x.mean(dim=-1, keepdim=True)"


def test_an_output_of_another_dtype_is_named_with_both_dtypes(tmp_path):
    """A table built in float64 turns the float32 input into float64: the values are right."""
    path = plant(
        tmp_path / "encoder.py",
        "encoder",
        {
            "pe = torch.zeros(T, self.d_model, device=x.device)": (
                "pe = torch.zeros(T, self.d_model, dtype=torch.float64)"
            ),
            "pe.unsqueeze(0).to(x.dtype)": "pe.unsqueeze(0)",
        },
    )
    _, verdicts = check_here("encoder", path, ("PositionalEncoding.forward",))
    assert verdicts["PositionalEncoding.forward"]["message"] == (
        "the output has dtype torch.float64, expected torch.float32"
    )


def test_a_missing_return_says_none(tmp_path):
    path = plant(
        tmp_path / "encoder.py",
        "encoder",
        {"return (x - mean) / torch.sqrt(var + 1e-5)": "x = (x - mean) / torch.sqrt(var + 1e-5)"},
    )
    _, verdicts = check_here("encoder", path, (NORM,))
    assert verdicts[NORM]["message"] == (
        "output 1 of 2 (rows of scale 3) is None (a missing return?), expected a tensor of "
        "shape (3, 7, 12)"
    )


def test_sys_exit_or_keyboard_interrupt_in_a_part_fails_that_part_only(tmp_path):
    path = plant(tmp_path / "encoder.py", "encoder", {_NORM_BODY: "        raise SystemExit(3)"})
    _, verdicts = check_here("encoder", path)
    line = 1 + next(i for i, t in enumerate(path.read_text().splitlines()) if "SystemExit" in t)
    assert verdicts[NORM]["message"] == f"calls sys.exit(3) (encoder.py, line {line} in norm)"
    assert verdicts["TransformerEncoderLayer.feed_forward"]["status"] == "pass"
    path = plant(
        tmp_path / "encoder.py", "encoder", {_NORM_BODY: "        raise KeyboardInterrupt"}
    )
    _, verdicts = check_here("encoder", path, (NORM,))
    assert (
        verdicts[NORM]["message"] == f"raised KeyboardInterrupt (encoder.py, line {line} in norm)"
    )


def test_a_long_exception_message_is_cut_to_its_first_line(tmp_path):
    path = plant(
        tmp_path / "encoder.py", "encoder", {_NORM_BODY: "        raise ValueError('x' * 5000)"}
    )
    _, verdicts = check_here("encoder", path, (NORM,))
    message = verdicts[NORM]["message"]
    assert message.startswith("raised ValueError: xxx") and "x..." in message
    assert len(message) < 300 and message.endswith(" in norm)")


def line_of(path, text: str) -> int:
    return 1 + next(i for i, t in enumerate(path.read_text().splitlines()) if text in t)


def test_an_exception_shows_the_calls_in_the_students_file_that_led_to_it(tmp_path):
    """Only the student's frames, innermost first: not attnlab's part runner, nor torch's."""
    helper = 'def _weights(scores):\n    raise ValueError("boom")\n\n\nclass PositionalEncoding'
    path = plant(
        tmp_path / "encoder.py",
        "encoder",
        {
            "class PositionalEncoding": helper,
            "weights = torch.softmax(scores, dim=-1)": "weights = _weights(scores)",
        },
    )
    _, verdicts = check_here("encoder", path, (ATTENTION, LAYER))
    raised = line_of(path, 'raise ValueError("boom")')
    called = line_of(path, "weights = _weights(scores)")
    in_forward = line_of(path, "heads = self.self_attention(")
    chain = f"line {raised} in _weights, called from line {called} in self_attention"
    assert verdicts[ATTENTION]["message"] == f"raised ValueError: boom (encoder.py, {chain})"
    assert verdicts[LAYER]["message"] == (
        f"raised ValueError: boom (encoder.py, {chain}, called from line {in_forward} in forward)"
    )


def test_a_long_chain_of_calls_is_cut_and_recursion_is_counted(tmp_path):
    path = tmp_path / "encoder.py"
    source = "def walk(n):\n    return walk(n - 1) if n else 1 / 0\n\nwalk(300)\n"
    try:
        exec(compile(source, str(path), "exec"), {})
    except ZeroDivisionError as e:
        assert where(e, path) == "line 2 in walk (301 times), called from line 4"
        assert where(e, path, shown=1) == "line 2 in walk (301 times), and 1 more call"


def test_an_import_error_names_the_calls_that_raised_it(capsys, tmp_path):
    (tmp_path / "encoder.py").write_text("def f():\n    return 1 / 0\n\n\nf()\n")
    code, _, err = run_cli(capsys, "exercise", "check", str(tmp_path))
    assert_one_line_error(
        code, err, "it raises ZeroDivisionError at line 2 in f, called from line 5 when it is "
    )


def test_an_import_error_with_a_long_message_is_one_short_line(capsys, tmp_path):
    (tmp_path / "encoder.py").write_text("raise ValueError('x' * 5000 + '\\nsecond line')\n")
    code, _, err = run_cli(capsys, "exercise", "check", str(tmp_path))
    assert_one_line_error(code, err, "it raises ValueError at line 1 when it is imported: xxx")
    assert len(err) < 300 and "second line" not in err


def test_a_renamed_class_or_method_is_named_with_the_name_the_file_has(tmp_path):
    path = plant(
        tmp_path / "encoder.py",
        "encoder",
        {
            "class TransformerEncoderLayer(nn.Module):": "class EncoderLayer(nn.Module):",
            "TransformerEncoderLayer(d_model, num_heads, d_ff, dropout) for": (
                "EncoderLayer(d_model, num_heads, d_ff, dropout) for"
            ),
            "def concat_cls(self, x: Tensor)": "def concat_CLS(self, x: Tensor)",
        },
    )
    problems, _ = check_here("encoder", path)
    assert problems == [
        "TransformerEncoderLayer is missing (the file has EncoderLayer: keep the template's names)",
        "TransformerEncoder.concat_cls is missing (the class has concat_CLS: keep the "
        "template's names)",
    ]


def test_a_missing_class_is_not_mistaken_for_another_class_of_the_template(tmp_path):
    """TransformerEncoder is close to TransformerEncoderLayer, but it is the template's own."""
    text = plant(tmp_path / "encoder.py", "encoder", {}).read_text()
    start = text.index("class TransformerEncoderLayer(")
    (tmp_path / "encoder.py").write_text(
        text[:start] + text[text.index("class Transformer", start + 1) :]
    )
    problems, _ = check_here("encoder", tmp_path / "encoder.py")
    assert problems == ["TransformerEncoderLayer is missing"]


def test_an_endless_loop_in_a_part_and_a_killed_check_are_named(capsys, tmp_path):
    loop = {_NORM_BODY: "        while True:\n            pass"}
    plant(tmp_path / "encoder.py", "encoder", loop)
    args = ["exercise", "check", str(tmp_path), "--part", "norm", "--timeout", "2"]
    _, out, _ = run_cli(capsys, *args)
    assert f"✗ {NORM}: took longer than 2 s (an endless loop?)" in out.splitlines()
    kill = "        import os, signal\n        os.kill(os.getpid(), signal.SIGKILL)"
    plant(tmp_path / "encoder.py", "encoder", {_NORM_BODY: kill})
    _, out, _ = run_cli(capsys, *args)
    assert f"✗ {NORM}: the checking process was killed by SIGKILL" in out.splitlines()


def test_dropout_on_in_eval_mode_outside_the_catalogue_is_named_as_a_likely_cause(tmp_path):
    path = plant(
        tmp_path / "decoder.py",
        "decoder",
        {"self.dropout3(self.feed_forward(x))": "F.dropout(self.feed_forward(x), 0.1)"},
    )
    _, verdicts = check_here("decoder", path, ("DecoderLayer.feed_forward_block",))
    assert verdicts["DecoderLayer.feed_forward_block"]["message"] == (
        "two calls in eval mode give different outputs (dropout that ignores eval mode, such "
        "as F.dropout without training=self.training, does this)"
    )


def test_a_pair_returned_as_one_tensor_is_named_with_the_call(tmp_path):
    path = plant(
        tmp_path / "attention.py",
        "attention",
        {"return (out, attention) if return_attention else out": "return out"},
    )
    _, verdicts = check_here("attention", path, ("MultiheadAttention.forward",))
    assert verdicts["MultiheadAttention.forward"]["message"] == (
        "MultiheadAttention(x, mask, return_attention=True) returned a Tensor of shape "
        "(2, 5, 12), expected a tuple (output, attention)"
    )


def test_an_output_of_the_wrong_shape_is_named_by_what_it_is(tmp_path):
    """Attention weights averaged over the heads, as nn.MultiheadAttention returns them."""
    path = plant(
        tmp_path / "attention.py",
        "attention",
        {"return attention @ v, attention  #": "return attention @ v, attention.mean(dim=1)  #"},
    )
    _, verdicts = check_here("attention", path, ("scaled_dot_product",))
    assert verdicts["scaled_dot_product"]["message"] == (
        "output 2 of 4 (the attention weights, with the mask) has shape (2, 5, 5), "
        "expected (2, 3, 5, 5)"
    )


def test_a_layer_that_breaks_on_a_batch_of_one_is_caught(tmp_path):
    """squeeze() drops the batch axis only when the batch holds one sequence."""
    old = "x = self.gamma2 * self.norm(x + self.dropout(self.feed_forward(x))) + self.beta2\n"
    path = plant(tmp_path / "encoder.py", "encoder", {old: old + "        x = x.squeeze()\n"})
    _, verdicts = check_here("encoder", path, ("TransformerEncoderLayer.forward",))
    assert verdicts["TransformerEncoderLayer.forward"]["message"] == (
        "output 3 of 4 (with a batch of 1) has shape (7, 12), expected (1, 7, 12)"
    )


def test_a_call_that_raises_on_an_edge_case_says_which_case(tmp_path):
    """The heads split with T read from the mask's last axis: right until T is not 7."""
    path = plant(
        tmp_path / "encoder.py",
        "encoder",
        {"B, T, _ = x.shape\n        q, k, v": "B, T = x.size(0), 7\n        q, k, v"},
    )
    _, verdicts = check_here("encoder", path, ("TransformerEncoderLayer.forward",))
    message = verdicts["TransformerEncoderLayer.forward"]["message"]
    assert message.startswith("with a sequence of length 1: raised RuntimeError: "), message


def test_a_causal_mask_of_integers_or_wrong_for_one_position_is_named(tmp_path):
    causal = "return torch.ones(T, T, dtype=torch.bool).tril()"
    path = plant(
        tmp_path / "decoder.py", "decoder", {causal: "return torch.ones(T, T).tril().long()"}
    )
    _, verdicts = check_here("decoder", path, ("causal_mask",))
    assert verdicts["causal_mask"]["message"] == (
        "causal_mask(6) returned a torch.int64 tensor, expected torch.bool"
    )
    one = "torch.ones(T, T, dtype=torch.bool).tril(diagonal=-1) if T == 1 else "
    path = plant(
        tmp_path / "decoder.py", "decoder", {causal: causal.replace("return ", f"return {one}")}
    )
    _, verdicts = check_here("decoder", path, ("causal_mask",))
    assert verdicts["causal_mask"]["message"].startswith(
        "the values are wrong in output 3 of 3 (the mask for 1 position)"
    )


def test_an_exception_that_a_known_mistake_raises_too_gets_its_hint(tmp_path):
    """Keys from the decoder break the first decoding step (a target of length 1 against a
    memory mask of 5): the same error as the catalogue's variant, so the same hint."""
    cross = "attended = self.cross_attn(x, memory, mask=memory_mask)"
    path = plant(
        tmp_path / "decoder.py",
        "decoder",
        {cross: "attended = self.cross_attn(x, memory=x, mask=memory_mask)"},
    )
    _, verdicts = check_here("decoder", path, ("DecoderLayer.forward",))
    verdict = verdicts["DecoderLayer.forward"]
    assert verdict["mistake"] == "cross-attention-on-decoder", verdict


def test_outputs_returned_in_the_wrong_order_are_named(tmp_path):
    path = plant(
        tmp_path / "attention.py",
        "attention",
        {"return attention @ v, attention  #": "return attention, attention @ v  #"},
    )
    _, verdicts = check_here("attention", path, ("scaled_dot_product",))
    assert verdicts["scaled_dot_product"]["message"] == (
        "output 1 of 4 (the values, with the mask) holds what output 2 of 4 (the attention "
        "weights, with the mask) should: the outputs are returned in the wrong order"
    )


def test_a_pair_of_catalogue_mistakes_that_loops_forever_does_not_stop_the_check(tmp_path):
    """Ignoring max_len and not feeding the argmax back never ends: the checker tries that
    pair when no single mistake matches, and must give up on it, not hang."""
    loop = "while tgt.size(1) < max_len and not finished.all():"
    fill = "next_id = next_id.masked_fill(finished, eos_id)"
    path = plant(
        tmp_path / "decoder.py",
        "decoder",
        {loop: "while not finished.all():", fill: "next_id = next_id.masked_fill(finished, 5)"},
    )
    _, verdicts = check_here("decoder", path, ("greedy_decode",))
    assert verdicts["greedy_decode"]["message"] == (
        "output 2 of 2 (with max_len 5) has shape (3, 8), expected (3, 5)"
    )


def test_an_error_in_every_call_is_not_blamed_on_the_edge_case(tmp_path):
    """The layer's ordinary call runs before the edge case of length 1, so an error raised by
    both is not labelled 'with a target of length 1' (which sends the student to the wrong
    place)."""
    boom = '        raise ValueError("boom")\n'
    for name, part, anchor in (
        ("decoder", "DecoderLayer.forward", "        x = self.self_attention_block(x, tgt_mask)\n"),
        ("llama", "GroupedQueryAttention.forward", "        H, H_kv, d_head = self.num_heads"),
    ):
        path = plant(tmp_path / f"{name}.py", name, {anchor: boom + anchor})
        _, verdicts = check_here(name, path, (part,))
        line = line_of(path, 'raise ValueError("boom")')
        assert verdicts[part]["message"] == (
            f"raised ValueError: boom ({name}.py, line {line} in forward)"
        )

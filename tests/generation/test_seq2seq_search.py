"""Greedy and beam search of the encoder-decoder: cache or not, same tokens and logits; beam
search is exact when the beam holds every hypothesis; beam size 1 is greedy."""

import itertools

import pytest
import torch

from attnlab.errors import InputError
from attnlab.generation import beam_search, greedy_search, length_penalty_factor
from attnlab.models import Seq2SeqConfig, Seq2SeqTransformer

PAD, BOS, EOS = 0, 1, 2


def _model(vocab=11, norm_first=False, seed=0, dropout=0.0, **overrides) -> Seq2SeqTransformer:
    torch.manual_seed(seed)
    config = Seq2SeqConfig(
        src_vocab_size=vocab,
        tgt_vocab_size=vocab,
        d_model=32,
        num_heads=4,
        num_encoder_layers=2,
        num_decoder_layers=2,
        d_ff=64,
        dropout=dropout,
        norm_first=norm_first,
        max_len=64,
        **overrides,
    )
    model = Seq2SeqTransformer(config).eval()
    with torch.no_grad():  # sharper distributions than at initialisation: more varied outputs
        model.tgt_embed.embedding.weight.mul_(3.0)
    return model


def _sources(vocab=11):
    torch.manual_seed(1)
    src = torch.randint(3, vocab, (4, 7))
    src[1, 5:] = PAD
    src[3, 2:] = PAD
    return src


@pytest.mark.parametrize("norm_first", [False, True])
def test_cached_and_uncached_greedy_agree(norm_first):
    model, src = _model(norm_first=norm_first), _sources()
    cached, cached_logits = greedy_search(model, src, 12, use_cache=True, return_logits=True)
    plain, plain_logits = greedy_search(model, src, 12, use_cache=False, return_logits=True)
    assert torch.equal(cached, plain)
    assert (cached_logits - plain_logits).abs().max() <= 1e-5


def test_greedy_follows_the_argmax_of_teacher_forced_logits():
    model, src = _model(), _sources()
    tokens, logits = greedy_search(model, src, 10, return_logits=True)
    tgt_in = torch.cat([torch.full((4, 1), BOS), tokens[:, :-1]], dim=1)
    forced = model(src, tgt_in)  # (B, T, V): one full pass over greedy's own output
    for b in range(4):
        n = int((tokens[b] != PAD).sum())  # up to and including eos
        assert torch.equal(forced[b, :n].argmax(-1), tokens[b, :n])
        assert (forced[b, :n] - logits[b, :n]).abs().max() <= 1e-5


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_pads_after_eos(use_cache):
    """Rows 0 and 2 emit eos at step 3 for certain: the output layer adds a large bias to the
    eos logit of those rows at that step, and rules eos out everywhere else. So rows 0 and 2
    stop there and must be padded after it; rows 1 and 3 run on to the limit."""
    model, src = _model(), _sources()
    eos_step, steps, project = 3, [0], model.project

    def project_with_eos_bias(hidden):  # (B, 1, d_model) -> (B, 1, V): once per step
        logits = project(hidden)
        bias = torch.full((hidden.size(0),), -1e4)  # eos ruled out ...
        if steps[0] == eos_step:
            bias[[0, 2]] = 1e4  # ... except for rows 0 and 2 at step 3
        logits[..., EOS] += bias[:, None]
        steps[0] += 1
        return logits

    model.project = project_with_eos_bias  # decode's output layer, as an instance attribute
    tokens = greedy_search(model, src, 20, use_cache=use_cache)
    assert steps[0] == 20 and tokens.shape == (4, 20)  # rows 1 and 3 never finish
    pad_or_eos = torch.tensor([PAD, EOS])
    for row in (0, 2):
        assert tokens[row, eos_step] == EOS
        assert not torch.isin(tokens[row, :eos_step], pad_or_eos).any()
        assert (tokens[row, eos_step + 1 :] == PAD).all()
    for row in (1, 3):
        assert not torch.isin(tokens[row], pad_or_eos).any()


def test_beam_size_one_is_greedy():
    model, src = _model(), _sources()
    greedy = greedy_search(model, src, 12)
    beam = beam_search(model, src, beam_size=1, max_new_tokens=12)
    assert torch.equal(beam, greedy)


def test_cached_and_uncached_beam_search_agree():
    model, src = _model(), _sources()
    cached = beam_search(model, src, beam_size=4, max_new_tokens=12, use_cache=True)
    uncached = beam_search(model, src, beam_size=4, max_new_tokens=12, use_cache=False)
    assert torch.equal(cached, uncached)


def _sequence_log_prob(model, src_row, target):
    """Sum of log p(target_t | target_<t, src) with one teacher-forced pass, over the tokens
    a search may choose (padding and bos ruled out, as in the search)."""
    tgt = torch.tensor([target])
    tgt_in = torch.cat([torch.tensor([[BOS]]), tgt[:, :-1]], dim=1)
    logits = model(src_row[None], tgt_in)[0]  # (T, V)
    logits[:, [PAD, BOS]] = float("-inf")
    log_probs = logits.log_softmax(-1)  # (T, V)
    return log_probs.gather(1, tgt.T).sum().item()


def gnmt_length_penalty(length: int, alpha: float) -> float:
    """Wu et al. 2016, section 7: lp(Y) = (5 + |Y|)^alpha / (5 + 1)^alpha."""
    return (5 + length) ** alpha / 6**alpha


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0, 2.0])
def test_the_length_penalty_is_gnmts(alpha):
    lengths = torch.arange(1.0, 12.0)
    expected = torch.tensor([gnmt_length_penalty(int(n), alpha) for n in lengths])
    torch.testing.assert_close(length_penalty_factor(lengths, alpha), expected)
    # by hand: length 1 is never penalised, and length 7 is (12 / 6)^alpha = 2^alpha
    assert length_penalty_factor(torch.tensor(1.0), alpha).item() == pytest.approx(1.0)
    assert length_penalty_factor(torch.tensor(7.0), alpha).item() == pytest.approx(2**alpha)


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_search_with_a_full_beam_is_exhaustive_search(alpha, use_cache):
    """With a beam as wide as the set of all hypotheses, beam search must return the
    best-scoring one: compare with brute-force enumeration on a 5-token vocabulary, scored
    by teacher-forced passes of the whole model (no cache) and GNMT's length penalty written
    out, with and without a cache."""
    vocab, steps = 5, 3  # pad, bos, eos, and two real tokens
    model = _model(vocab=vocab, seed=3)
    with torch.no_grad():  # eos is reachable early: finished hypotheses compete with long ones
        model.tgt_embed.embedding.weight[EOS].mul_(0.5)
    src = torch.tensor([[3, 4, 3], [4, 4, 3]])
    found = beam_search(
        model,
        src,
        beam_size=vocab**steps,
        length_penalty=alpha,
        max_new_tokens=steps,
        use_cache=use_cache,
    )
    for b in range(2):
        best, best_score = None, float("-inf")
        # Every hypothesis: up to `steps` tokens, ending at the first eos or at the limit.
        for n in range(1, steps + 1):
            for body in itertools.product(range(vocab), repeat=n):
                if EOS in body[:-1] or PAD in body or BOS in body:
                    continue
                if n < steps and body[-1] != EOS:
                    continue
                lp = _sequence_log_prob(model, src[b], list(body))
                score = lp / gnmt_length_penalty(n, alpha)
                if score > best_score:
                    best, best_score = list(body), score
        row = [t for t in found[b].tolist() if t != PAD]
        assert row == best


def test_beam_search_refuses_an_empty_beam():
    from attnlab.errors import InputError

    with pytest.raises(InputError, match="beam size"):
        beam_search(_model(), _sources(), beam_size=0)


def test_decode_last_only_projects_the_last_position():
    model, src = _model(), _sources()
    memory, src_mask = model.encode(src)
    tgt_in = torch.randint(3, 11, (4, 5))
    full = model.decode(tgt_in, memory, src_mask)  # (B, T, V)
    last = model.decode(tgt_in, memory, src_mask, last_only=True)  # (B, 1, V)
    assert last.shape == (4, 1, 11)
    torch.testing.assert_close(last, full[:, -1:], rtol=0, atol=1e-6)


def test_sources_without_padding_decode_as_in_a_padded_batch():
    # A batch without padding runs cross-attention with no mask at all (generation's
    # _Seq2SeqStepper drops the all-True mask); rows 0 and 2 have no padding.
    model, src = _model(), _sources()
    in_padded_batch, logits_padded = greedy_search(model, src, 10, return_logits=True)
    alone, logits_alone = greedy_search(model, src[[0, 2]], 10, return_logits=True)
    assert torch.equal(alone, in_padded_batch[[0, 2], : alone.size(1)])
    n = logits_alone.size(1)
    torch.testing.assert_close(logits_alone, logits_padded[[0, 2], :n], rtol=0, atol=1e-5)
    beams = beam_search(model, src[[0, 2]], beam_size=3)
    assert torch.equal(beams, beam_search(model, src, beam_size=3)[[0, 2], : beams.size(1)])


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_searches_return_normal_tensors_and_record_no_graph(search):
    model = _model()
    seen = []  # whether autograd was recording inside the decoder
    model.tgt_embed.register_forward_hook(lambda *_: seen.append(torch.is_grad_enabled()))
    src = _sources()
    if search == "greedy":
        tokens, logits = greedy_search(model, src, max_new_tokens=4, return_logits=True)
        assert not logits.is_inference()
    else:
        tokens = beam_search(model, src, beam_size=2, max_new_tokens=4)
    assert seen and not any(seen)
    assert not tokens.is_inference()


@pytest.mark.parametrize("search", [greedy_search, beam_search])
@pytest.mark.parametrize(
    "src, message",
    [
        (torch.tensor([[3, 11]]), r"src must be ids in \[0, 11\) .*got ids from 3 to 11"),
        (torch.zeros(2, 0, dtype=torch.long), r"src must be \(B, S\) with S >= 1; got \(2, 0\)"),
        (torch.tensor([3, 4, 5]), r"src must be \(B, S\) with S >= 1; got \(3,\)"),
        (torch.full((1, 65), 3), "src has 65 tokens; the model's positions end at max_len=64"),
    ],
)
def test_a_source_the_model_cannot_encode_is_refused_before_decoding(search, src, message):
    with pytest.raises(InputError, match=message):
        search(_model(), src, max_new_tokens=3)


def test_search_settings_that_are_not_numbers_of_the_right_kind_are_named():
    with pytest.raises(InputError, match="beam_size must be a whole number; got 2.5"):
        beam_search(_model(), _sources(), beam_size=2.5)
    with pytest.raises(InputError, match="length_penalty must be a finite number; got nan"):
        beam_search(_model(), _sources(), length_penalty=float("nan"))
    with pytest.raises(InputError, match="max_new_tokens must be a whole number; got 2.5"):
        greedy_search(_model(), _sources(), max_new_tokens=2.5)


@pytest.mark.parametrize("search", [greedy_search, beam_search])
def test_a_language_model_given_to_a_search_is_pointed_to_generate(search):
    from attnlab.models import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=11, block_size=8, num_layers=1, num_heads=2, d_model=8))
    # an AttributeError before: 'GPT' object has no attribute 'encode'
    with pytest.raises(InputError, match="got a GPT; a decoder-only language model continues"):
        search(model.eval(), torch.tensor([[3, 4]]))


@pytest.mark.parametrize("search", [greedy_search, beam_search])
def test_the_source_and_the_model_swapped_are_named(search):
    # greedy_search raised AttributeError "'Tensor' object has no attribute 'config'"
    with pytest.raises(InputError, match="decode an encoder-decoder .*got a Tensor"):
        search(_sources(), _model())


def test_a_beam_beyond_the_largest_is_refused_before_anything_is_allocated():
    # beam_size=10**9 copied the source a billion times over (the machine ran out of memory).
    with pytest.raises(InputError, match="beam size must be in 1 .. 1,000; got 1000000000"):
        beam_search(_model(), _sources(), beam_size=10**9)


@pytest.mark.parametrize("value", ["0.6", None])
def test_a_length_penalty_that_is_not_a_number_is_named(value):
    with pytest.raises(InputError, match="length_penalty must be a finite number; got"):
        beam_search(_model(), _sources(), length_penalty=value)


@pytest.mark.parametrize("search", [greedy_search, beam_search])
def test_a_model_in_training_mode_with_dropout_is_refused(search):
    model = _model(dropout=0.1).train()  # residual and attention dropout on
    with pytest.raises(InputError, match=r"call model.eval\(\) before decoding"):
        search(model, _sources(), max_new_tokens=3)
    model.eval()
    assert search(model, _sources(), max_new_tokens=3).size(0) == 4

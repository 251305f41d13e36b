"""Autoregressive decoding: greedy search, beam search and sampling, all cache-aware.

A Transformer decoder produces one token per step (paper section 3, "at each step the model
is auto-regressive, consuming the previously generated symbols as additional input when
generating the next"). Without a cache every step re-runs the decoder over the whole prefix;
with a key/value cache (:class:`attnlab.nn.KVCache`) each step runs it on the newest token only
and, in an encoder-decoder, the cross-attention keys and values of the source are computed once.

Two kinds of model share the machinery below through a small "stepper" that answers one
question — the logits of the next token given the tokens so far:

* decoder-only language models (:class:`attnlab.models.GPT`): ``model(ids, cache=...)``,
  ``model.make_cache()``, ``model.config.block_size`` — see :func:`generate`; a model whose
  ``make_cache()`` is ``None`` (a Llama of a user's blocks) keeps no cache, and every step
  recomputes the whole context;
* encoder-decoders (:class:`attnlab.models.Seq2SeqTransformer`): ``encode``, ``decode``,
  ``make_cache`` and the ``bos_id / eos_id / pad_id`` of its config — see
  :func:`greedy_search` and :func:`beam_search`.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.errors import CompileError, InputError
from attnlab.machine import available_on, refuse_if_short
from attnlab.nn import MultiHeadAttention
from attnlab.nn.dropout import Dropout


def _inference(search: Callable) -> Callable:
    """Run ``search`` under :func:`torch.inference_mode` and return normal tensors.

    Inference mode drops autograd's bookkeeping (version counters, view tracking), which
    ``torch.no_grad`` keeps: each of the few hundred small operations of a decoding step then
    costs about half as much on the CPU (``attnlab bench generate``). The tensors made inside
    are inference tensors, which autograd refuses to save for a backward pass, so the results
    are cloned outside inference mode: the ids can be fed to a model that is being trained.
    """

    @functools.wraps(search)
    def wrapper(*args, **kwargs):
        with torch.inference_mode():
            result = search(*args, **kwargs)
        if isinstance(result, tuple):
            return tuple(t.clone() for t in result)
        return result.clone()

    return wrapper


# -- steppers: the logits of the next token ------------------------------------------------


class _LanguageModelStepper:
    """Next-token logits of a decoder-only LM, with or without a KV cache.

    The model sees at most ``block_size`` tokens. Past that, the window slides by
    ``block_size // 2`` tokens at a time, so that the context is always between half a block
    and a whole block: the cache is then rebuilt once every ``block_size // 2`` steps instead
    of at every step. The cached and uncached paths use the same window and so produce the
    same tokens.
    """

    def __init__(
        self,
        model: Any,
        use_cache: bool,
        static: tuple[int, int] | None = None,
        compiled: bool = False,
    ):
        # model: typed Any, as it is read through config.block_size and make_cache, which
        # nn.Module does not declare (see the module docstring).
        self.model = model
        self.block_size: int = model.config.block_size
        self.use_cache = use_cache
        self.static = static  # (batch size, positions) of static caches; None: growing ones
        self.cache: list | None = None
        self.cached_start = 0  # position of the first token in the cache
        # Decoding steps (one new token per row) through torch.compile: with static caches
        # every step has the same shapes, so one compiled graph serves them all.
        self.step_model = torch.compile(model, fullgraph=True, dynamic=False) if compiled else None

    def window_start(self, length: int) -> int:
        """First position the model sees when ``length`` tokens exist."""
        if length <= self.block_size:
            return 0
        half = max(self.block_size // 2, 1)
        return ((length - self.block_size - 1) // half + 1) * half

    def next_logits(self, ids: Tensor) -> Tensor:
        """Logits ``(B, vocab)`` of the token after ``ids (B, T)``."""
        start = self.window_start(ids.size(1))
        if not self.use_cache:
            return self.model(ids[:, start:])[:, -1]  # (B, vocab)
        if self.cache is None or start != self.cached_start:
            self.cache, self.cached_start = self._empty_cache(), start
        new = ids[:, self.cached_start + len(self.cache[0]) :]  # (B, T_new): not yet cached
        if self.step_model is None or new.size(1) != 1:  # the prompt runs eagerly
            return self.model(new, cache=self.cache)[:, -1]  # (B, vocab)
        # A fresh (B, 1) tensor: a slice of the growing ids has new strides at every step, and
        # the compiled graph is guarded on strides.
        new = new.clone(memory_format=torch.contiguous_format)
        try:
            return self.step_model(new, cache=self.cache)[:, -1]  # (B, vocab)
        except torch._dynamo.exc.BackendCompilerFailed as e:
            cause = getattr(e, "inner_exception", e)  # what the compiler raised
            reason = f"{type(cause).__name__}: {(str(cause).strip() or '?').splitlines()[0]}"
            raise CompileError(
                f"torch.compile cannot compile the model here ({reason}); generate without "
                "compiling"
            ) from None

    def _empty_cache(self) -> list:
        """Fresh growing caches, or the static ones emptied in place (allocated only once)."""
        if self.static is None:
            return self.model.make_cache()
        if self.cache is None:
            batch_size, max_len = self.static
            return self.model.make_cache(batch_size=batch_size, max_len=max_len)
        for layer_cache in self.cache:
            layer_cache.reset()
        return self.cache


class _Seq2SeqStepper:
    """Next-token logits of an encoder-decoder for a batch of sources (encoded once).

    A model whose ``make_cache()`` is ``None`` (a user's decoder layer, which keeps no
    key/value cache) is decoded as with ``use_cache=False``: each step re-reads the prefix.
    """

    def __init__(self, model: Any, src: Tensor, use_cache: bool):
        # model: typed Any, as it is read through encode, decode and make_cache, which
        # nn.Module does not declare (see the module docstring).
        self.model = model
        self.memory, src_mask = model.encode(src)  # (B, S, d_model), (B, 1, 1, S)
        # Without padding every source position may be attended to: no mask, so that each
        # step's cross-attention runs the fused kernel's mask-free path.
        self.src_mask = None if bool(src_mask.all()) else src_mask
        self.cache = model.make_cache() if use_cache else None

    def next_logits(self, ids: Tensor) -> Tensor:
        """Logits ``(B, vocab)`` of the token after decoder input ``ids (B, T)``."""
        # Without a cache the decoder re-reads the whole prefix; with one, only the new tokens.
        seen = 0 if self.cache is None else len(self.cache[0].self_attn)
        logits = self.model.decode(
            ids[:, seen:], self.memory, self.src_mask, self.cache, last_only=True
        )  # (B, 1, vocab)
        return logits[:, -1]  # (B, vocab)

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (beam search)."""
        self.memory = self.memory.index_select(0, index)
        if self.src_mask is not None:
            self.src_mask = self.src_mask.index_select(0, index)
        if self.cache is not None:
            for layer in self.cache:
                layer.reorder(index)


# -- argument checks, once per call --------------------------------------------------------


def _config(model: nn.Module) -> Any:
    """``model.config``: typed Any, as each kind of model has a config dataclass of its own
    (nn.Module declares no ``config``; the module docstring lists the fields read)."""
    return model.config


def _check_whole(name: str, value: Any) -> None:
    """Refuse a count that is not a whole number (a float or a bool), naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be a whole number; got {value!r}")


def _check_real(name: str, value: Any) -> None:
    """Refuse a setting that is not a finite real number (a string, ``None``, a bool, nan or
    inf), naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number; got {value!r}")


def _check_ids(
    model: nn.Module, ids: Any, vocab_size: int | None, name: str, length: str = "T"
) -> None:
    """Refuse ``ids`` unless they are integer token ids ``(B, T)``, ``T >= 1``, on the device
    of ``model``'s weights, each in ``[0, vocab_size)``. Runs once per call, before decoding
    (one device sync): on a GPU an id beyond the embedding would otherwise end in a
    device-side assert, and ids on another device fail deep inside the first step."""
    if not isinstance(ids, Tensor):
        raise InputError(f"{name} must be a tensor of token ids; got {type(ids).__name__}")
    if ids.dim() != 2 or ids.size(1) == 0:
        raise InputError(f"{name} must be (B, {length}) with {length} >= 1; got {tuple(ids.shape)}")
    if ids.dtype not in (torch.int64, torch.int32):
        raise InputError(f"{name} must be integer token ids (torch.long); got dtype {ids.dtype}")
    weight = next(model.parameters(), None)
    if weight is not None and weight.device != ids.device:
        raise InputError(
            f"{name} is on {ids.device} but the model is on {weight.device}: move one to the "
            f"other (e.g. {name}.to({str(weight.device)!r}))"
        )
    if vocab_size is None or ids.numel() == 0:
        return
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
        raise InputError(
            f"{name} must be ids in [0, {vocab_size}) (the model's vocabulary); got ids from "
            f"{low} to {high}"
        )


def _check_model(model: nn.Module, seq2seq: bool) -> None:
    """Refuse a model of the other kind: :func:`generate` continues a decoder-only language
    model, :func:`greedy_search` and :func:`beam_search` decode an encoder-decoder."""
    config = getattr(model, "config", None)
    is_seq2seq = all(hasattr(model, name) for name in ("encode", "decode", "make_cache"))
    is_seq2seq = is_seq2seq and all(hasattr(config, n) for n in ("bos_id", "eos_id", "pad_id"))
    is_lm = hasattr(model, "make_cache") and hasattr(config, "block_size")
    if seq2seq and not is_seq2seq:
        other = "; a decoder-only language model continues a prompt with generate" if is_lm else ""
        raise InputError(
            "greedy_search and beam_search decode an encoder-decoder (encode, decode, "
            f"make_cache, and bos_id, eos_id, pad_id in its config); got a "
            f"{type(model).__name__}{other}"
        )
    if not seq2seq and not is_lm:
        other = "; an encoder-decoder decodes with greedy_search or beam_search"
        other = other if is_seq2seq else ""
        raise InputError(
            "generate continues a decoder-only language model (make_cache, and block_size in "
            f"its config); got a {type(model).__name__}{other}"
        )
    _check_no_dropout(model)


def _check_no_dropout(model: nn.Module) -> None:
    """Refuse a model whose dropout is on (training mode): decoding would zero activations at
    random, so each call would give other, worse tokens for the same input."""
    for module in model.modules():
        if isinstance(module, (nn.Dropout, Dropout)):
            rate = module.p
        elif isinstance(module, MultiHeadAttention):
            rate = module.dropout
        else:
            continue
        if module.training and rate > 0:
            raise InputError(
                f"the model is in training mode, where its dropout ({rate}) makes decoding "
                "random: call model.eval() before decoding"
            )


def _check_source(model: nn.Module, src: Any) -> None:
    """Refuse a source that the encoder-decoder ``model`` cannot encode: not ``(B, S)``
    integer ids of its source vocabulary, empty, or longer than its ``max_len``."""
    _check_model(model, seq2seq=True)
    config = _config(model)
    _check_ids(model, src, getattr(config, "src_vocab_size", None), "src", length="S")
    max_len = getattr(config, "max_len", None)
    if max_len is not None and src.size(1) > max_len:
        raise InputError(
            f"src has {src.size(1)} tokens; the model's positions end at max_len={max_len}"
        )


# -- encoder-decoder search ----------------------------------------------------------------

# The most hypotheses beam search keeps per source (the paper's is 4). Every one is a row of
# the decoder's batch, so a typo such as 10**9 would allocate the source that many times over.
MAX_BEAM = 1000


def _never_predicted(logits: Tensor, config) -> Tensor:
    """``logits (B, V)`` with padding and the start token ruled out: no target contains them."""
    logits = logits.clone()
    logits[:, [config.pad_id, config.bos_id]] = float("-inf")
    return logits


def _max_new_tokens(model: nn.Module, src: Tensor, max_new_tokens: int | None) -> int:
    limit: int = _config(model).max_len
    if max_new_tokens is None:
        max_new_tokens = 2 * src.size(1) + 10
    _check_whole("max_new_tokens", max_new_tokens)
    if max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be at least 1; got {max_new_tokens}")
    return min(max_new_tokens, limit)


@_inference
def greedy_search(
    model: nn.Module,
    src: Tensor,
    max_new_tokens: int | None = None,
    use_cache: bool = True,
    return_logits: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Greedy decoding of an encoder-decoder: at each step the most likely next token.

    Args:
        model: a :class:`~attnlab.models.Seq2SeqTransformer` in eval mode (one whose dropout
            is on, in training mode, is refused with an InputError).
        src: source ids ``(B, S)``, padded with ``pad_id``; ``1 <= S <= max_len`` and each id
            in ``[0, src_vocab_size)``, on the model's device (checked once, before
            decoding: an InputError).
        max_new_tokens: at most this many target tokens (default ``2 S + 10``, capped by the
            model's ``max_len``).
        use_cache: reuse keys and values between steps (same tokens, faster).
        return_logits: also return the logits of every step.

    Padding and ``bos_id`` are never chosen (no target contains them).

    Returns:
        Target ids ``(B, T)`` without the leading ``bos_id``, each row ending at its first
        ``eos_id`` (included) and padded with ``pad_id`` after it; with ``return_logits`` also
        the logits ``(B, T, vocab)`` of each step.
    """
    _check_source(model, src)  # first: a model given in the wrong place has no config
    c = _config(model)
    limit = _max_new_tokens(model, src, max_new_tokens)
    stepper = _Seq2SeqStepper(model, src, use_cache)
    ids = src.new_full((src.size(0), 1), c.bos_id)  # (B, 1)
    finished = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)  # (B,)
    all_logits = []
    for _ in range(limit):
        logits = stepper.next_logits(ids)  # (B, vocab)
        all_logits.append(logits)
        next_id = _never_predicted(logits, c).argmax(dim=-1)  # (B,)
        next_id = next_id.masked_fill(finished, c.pad_id)
        ids = torch.cat([ids, next_id[:, None]], dim=1)  # (B, T + 1)
        finished |= next_id == c.eos_id
        if finished.all():
            break
    tokens = ids[:, 1:]  # (B, T)
    return (tokens, torch.stack(all_logits, dim=1)) if return_logits else tokens


def length_penalty_factor(length: Tensor, alpha: float) -> Tensor:
    """GNMT length penalty ``((5 + length) / 6) ** alpha`` (Wu et al. 2016, section 7).

    Beam scores (sums of log-probabilities) are divided by it: ``alpha = 0`` compares raw
    scores (favouring short outputs), larger ``alpha`` favours longer ones.
    """
    return ((5.0 + length) / 6.0) ** alpha


def _best_extensions(
    scores: Tensor, logits: Tensor, finished: Tensor, pad_id: int
) -> tuple[Tensor, Tensor, Tensor]:
    """One step of beam search: the ``K`` best one-token extensions of each source's beams.

    Args:
        scores: total log-probability of each hypothesis ``(B, K)``.
        logits: next-token logits of each hypothesis ``(B*K, V)``, the ``K`` beams of source
            ``b`` in rows ``b*K ..``.
        finished: ``(B*K,)``, True where a hypothesis has produced ``eos_id``; it may only be
            extended by ``pad_id``, at no cost.
        pad_id: the padding token.

    Returns:
        The survivors' scores ``(B, K)``, which hypothesis of its source each one extends
        ``(B, K)`` (in ``0 .. K-1``) and with which token ``(B, K)``.
    """
    B, K = scores.shape
    log_probs = logits.log_softmax(dim=-1)  # (B*K, V)
    V = log_probs.size(-1)
    # A finished hypothesis may only continue with padding, at no cost.
    log_probs[finished] = float("-inf")
    log_probs[finished, pad_id] = 0.0
    candidates = scores.view(B * K, 1) + log_probs  # (B*K, V)
    candidates = candidates.view(B, K * V)  # (B, K*V)
    scores, flat = candidates.topk(K, dim=-1)  # (B, K) each
    beam = flat // V  # (B, K): which hypothesis each survivor extends
    token = flat % V  # (B, K): with which token
    return scores, beam, token


@_inference
def beam_search(
    model: nn.Module,
    src: Tensor,
    beam_size: int = 4,
    length_penalty: float = 0.6,
    max_new_tokens: int | None = None,
    use_cache: bool = True,
) -> Tensor:
    """Beam search of an encoder-decoder (the paper's section 6.1: beam 4, alpha 0.6).

    Every source keeps ``beam_size`` hypotheses. Each step extends each hypothesis by every
    token, scores the extensions by total log-probability and keeps the best ``beam_size``
    per source. A hypothesis that has produced ``eos_id`` is finished: it keeps its slot and
    score and may only be extended by ``pad_id`` at no cost. The search ends when every
    hypothesis is finished or after ``max_new_tokens`` steps; the winner of each source is the
    hypothesis with the highest score divided by :func:`length_penalty_factor`.
    ``beam_size=1`` is exactly :func:`greedy_search`.

    Args:
        model: a :class:`~attnlab.models.Seq2SeqTransformer` in eval mode (one whose dropout
            is on, in training mode, is refused with an InputError).
        src: source ids ``(B, S)``, padded with ``pad_id``.
        beam_size: hypotheses kept per source, at most :data:`MAX_BEAM` (1000).
        length_penalty: ``alpha`` of the GNMT length penalty, a finite number.
        max_new_tokens, use_cache: as for :func:`greedy_search`.

    Returns:
        The best target ids per source ``(B, T)``, as :func:`greedy_search` returns them.
    """
    _check_whole("beam_size", beam_size)
    if not 1 <= beam_size <= MAX_BEAM:
        raise InputError(f"beam size must be in 1 .. {MAX_BEAM:,}; got {beam_size}")
    _check_real("length_penalty", length_penalty)
    _check_source(model, src)
    limit = _max_new_tokens(model, src, max_new_tokens)
    c = _config(model)
    B, K = src.size(0), beam_size
    device = src.device
    src = src.repeat_interleave(K, dim=0)  # (B*K, S): the K beams of source b are rows b*K..
    stepper = _Seq2SeqStepper(model, src, use_cache)
    ids = src.new_full((B * K, 1), c.bos_id)  # (B*K, 1)
    # Only the first beam of each source is live at the start; the others are copies of it.
    scores = torch.full((B, K), float("-inf"), device=device)  # (B, K)
    scores[:, 0] = 0.0
    finished = torch.zeros(B * K, dtype=torch.bool, device=device)  # (B*K,)
    lengths = torch.zeros(B * K, device=device)  # (B*K,) tokens up to and including eos
    for _ in range(limit):
        logits = _never_predicted(stepper.next_logits(ids).float(), c)  # (B*K, V)
        scores, beam, token = _best_extensions(scores, logits, finished, c.pad_id)
        rows = (beam + torch.arange(B, device=device)[:, None] * K).view(-1)  # (B*K,)
        stepper.reorder(rows)
        ids = torch.cat([ids.index_select(0, rows), token.view(-1, 1)], dim=1)  # (B*K, T+1)
        was_finished = finished.index_select(0, rows)
        lengths = lengths.index_select(0, rows) + (~was_finished).float()
        finished = was_finished | (token.view(-1) == c.eos_id)  # (B*K,)
        if finished.all():
            break
    normalised = scores / length_penalty_factor(lengths.view(B, K), length_penalty)  # (B, K)
    best = normalised.argmax(dim=-1) + torch.arange(B, device=device) * K  # (B,)
    return ids.index_select(0, best)[:, 1:]  # (B, T)


# -- language-model generation -------------------------------------------------------------

# The most tokens one call of generate adds (as ``attnlab generate --max-new-tokens``): past
# the window nothing else ends decoding, so a typo such as 10**12 ran until killed.
MAX_NEW_TOKENS = 10**6


def _filter_logits(logits: Tensor, top_k: int | None, top_p: float | None) -> Tensor:
    """Set to ``-inf`` every logit outside the top-k tokens and the top-p nucleus.

    ``logits (B, V)``. Top-p (Holtzman et al. 2020) keeps the smallest set of most likely
    tokens whose probabilities sum to at least ``top_p``.
    """
    if top_k is not None and top_k < logits.size(-1):
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)  # (B, V)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)  # (B, V)
        # Drop a token if the tokens before it already reach top_p (the first always stays).
        drop_sorted = (cumulative - sorted_logits.softmax(dim=-1)) >= top_p  # (B, V)
        drop_sorted[:, 0] = False  # also when top_p rounds to 0 in float32 (1e-300)
        drop = drop_sorted.scatter(1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def _check_generate_args(
    model: nn.Module,
    input_ids: Tensor,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    stop: str | None,
    decode: Callable[[list[int]], str] | None,
    seed: int | None = None,
    eos_id: int | Sequence[int] | None = None,
    on_token: Callable[[Tensor], None] | None = None,
) -> None:
    """Refuse the arguments of :func:`generate` that it cannot honour, one message each."""
    _check_model(model, seq2seq=False)
    _check_whole("max_new_tokens", max_new_tokens)
    if top_k is not None:
        _check_whole("top_k", top_k)
    # The window slides, so nothing else ends the loop: 10**12 decoded until killed.
    if not 0 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise InputError(f"max_new_tokens must be in 0 .. {MAX_NEW_TOKENS:,}; got {max_new_tokens}")
    _check_real("temperature", temperature)
    if temperature < 0:
        raise InputError(f"temperature must be 0 or more; got {temperature}")
    if top_k is not None and top_k < 1:
        raise InputError(f"top_k must be at least 1; got {top_k}")
    in_range = isinstance(top_p, numbers.Real) and 0.0 < top_p <= 1.0
    if top_p is not None and (isinstance(top_p, bool) or not in_range):  # True was read as 1.0
        raise InputError(f"top_p must be in (0, 1]; got {top_p!r}")
    vocab_size = getattr(_config(model), "vocab_size", None)
    _check_ids(model, input_ids, vocab_size, "input_ids")
    _check_callbacks(stop, decode, on_token)
    _check_seed(seed)
    _check_eos_ids(eos_id, vocab_size)


def _check_callbacks(stop: Any, decode: Any, on_token: Any) -> None:
    """Refuse a ``stop`` that is not text and a ``decode`` or ``on_token`` that cannot be
    called: each failed only after the first decoding step, in Python's words ('in <string>'
    requires string as left operand; 'str' object is not callable)."""
    if stop is not None and not isinstance(stop, str):
        raise InputError(f"stop must be a string; got {type(stop).__name__}")
    if stop is not None and decode is None:
        raise InputError("stop needs decode, to turn the new ids into text")
    for name, function in (("decode", decode), ("on_token", on_token)):
        if function is not None and not callable(function):
            raise InputError(f"{name} must be a function; got {type(function).__name__}")


def _check_seed(seed: Any) -> None:
    """Refuse a seed that is not a whole number in the range of torch's ``manual_seed``."""
    if seed is None:
        return
    _check_whole("seed", seed)
    if not -(2**63) <= seed < 2**64:
        raise InputError(f"seed must be in [-2**63, 2**64); got {seed}")


def _check_eos_ids(eos_id: Any, vocab_size: int | None) -> None:
    """Refuse an ``eos_id`` that is not ``None``, a token id or a sequence of token ids (whole
    numbers in ``[0, vocab_size)``: an id the model cannot produce would never stop it)."""
    if eos_id is None:
        return
    ids = [eos_id] if isinstance(eos_id, numbers.Integral) else eos_id
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
        raise InputError(f"eos_id must be a token id or a list of them; got {eos_id!r}")
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral) or i < 0:
            raise InputError(f"eos_id must hold token ids (whole numbers >= 0); got {eos_id!r}")
        if vocab_size is not None and int(i) >= vocab_size:
            raise InputError(
                f"eos_id {i} is not in the model's vocabulary [0, {vocab_size}): the model could "
                "never produce it, so it would never stop decoding"
            )


def _next_token(
    logits: Tensor,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    generator: torch.Generator | None,
) -> Tensor:
    """The next token ``(B,)`` from ``logits (B, V)``: the most likely one at temperature 0,
    else a sample from the softmax of ``logits / temperature`` within top-k and top-p."""
    if temperature == 0:
        return logits.argmax(dim=-1)  # (B,)
    # Shifted so that the largest logit is 0, and a temperature that rounds to 0 in the
    # logits' dtype (1e-300) kept at its smallest number: the other logits go to -inf and the
    # likeliest token(s) share the probability, instead of inf - inf or 0 / 0.
    shifted = logits - logits.max(dim=-1, keepdim=True).values  # (B, V)
    temperature = max(temperature, torch.finfo(logits.dtype).tiny)
    logits = _filter_logits(shifted / temperature, top_k, top_p)
    probs = logits.softmax(dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]  # (B,)


def _contains_stop(
    ids: Tensor, prompt_len: int, stop: str, decode: Callable[[list[int]], str]
) -> Tensor:
    """``(B,)``: True for each row of ``ids (B, T)`` whose new text (after the prompt)
    contains ``stop``."""
    texts = (decode(row[prompt_len:].tolist()) for row in ids)
    return torch.tensor([stop in text for text in texts], device=ids.device)


def _id_tensor(ids: int | Sequence[int], like: Tensor) -> Tensor:
    """One id or several as a 1-D tensor on ``like``'s device and of its dtype."""
    return torch.tensor(list(ids) if isinstance(ids, Sequence) else [ids]).to(like)


def _generator(seed: int, device: torch.device) -> torch.Generator:
    """A private random generator on ``device`` (the global one is left alone)."""
    return torch.Generator(device=device).manual_seed(seed)


@_inference
def generate(
    model: nn.Module,
    input_ids: Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    use_cache: bool = True,
    seed: int | None = None,
    stop: str | None = None,
    decode: Callable[[list[int]], str] | None = None,
    eos_id: int | Sequence[int] | None = None,
    on_token: Callable[[Tensor], None] | None = None,
    static_cache: bool = False,
    compile: bool = False,
) -> Tensor:
    """Continue ``input_ids`` with a decoder-only language model, one token at a time.

    Each step divides the next token's logits by ``temperature`` (0: greedy, the most likely
    token), keeps the ``top_k`` most likely and the ``top_p`` nucleus, and samples from the
    softmax of what remains.

    Args:
        model: a decoder-only LM (e.g. :class:`attnlab.models.GPT`) in eval mode (dropout
            on is refused): ``model(ids (B, T), cache=None) -> logits (B, T, vocab)``,
            ``make_cache()``, ``config.block_size``.
        input_ids: the prompt ``(B, T)`` on the model's device, at least one token per row,
            each id in ``[0, model.config.vocab_size)`` (checked once, before decoding).
        max_new_tokens: how many tokens to add (<= 10**6); temperature, top_k, top_p: as above.
        use_cache: reuse keys and values between steps (same tokens, faster; not for a user's
            blocks). Past ``block_size`` the window slides by half a block at a time.
        seed: seeds a private random generator (the global one is left alone).
        stop: with ``decode`` (ids -> text), stop once each row's new text contains it.
        eos_id: stop once every row has produced this token (or one of these tokens).
        on_token: called after each step with the new tokens ``(B,)``, e.g. to stream them.
        static_cache: one preallocated :class:`~attnlab.nn.StaticKVCache` per layer for the
            prompt and the new tokens (at most the window; a ConfigError if the device lacks
            the memory): the same shapes at every step (``torch.compile``, CUDA graphs).
        compile: static caches, and each step through :func:`torch.compile` (one graph,
            compiled for seconds at the first step; on the CPU it needs a C++ compiler, else
            a CompileError). Both need ``use_cache`` and a model that keeps a cache.

    Returns:
        ``(B, T + n)`` ids, the prompt followed by ``n <= max_new_tokens`` new tokens.
    """
    _check_generate_args(model, input_ids, max_new_tokens, temperature, top_k, top_p, stop,
                         decode, seed, eos_id, on_token)  # fmt: skip
    generator = None if seed is None else _generator(seed, input_ids.device)
    stepper = _stepper(model, input_ids, max_new_tokens, use_cache, static_cache, compile)
    finish, ids = _Finish(input_ids, eos_id, stop, decode), input_ids
    for _ in range(max_new_tokens):
        logits = stepper.next_logits(ids).float()  # (B, vocab)
        next_id = _next_token(logits, temperature, top_k, top_p, generator)  # (B,)
        ids = torch.cat([ids, next_id[:, None]], dim=1)  # (B, T + 1)
        if on_token is not None:
            on_token(next_id)
        if finish.every_row(next_id, ids):
            break
    return ids


def _stepper(
    model: Any,
    input_ids: Tensor,
    max_new_tokens: int,
    use_cache: bool,
    static_cache: bool,
    compile: bool,
) -> _LanguageModelStepper:
    """The stepper of :func:`generate`: with ``static_cache`` or ``compile``, static caches
    with room for the prompt and every new token (at most the window); without a cache when
    the model keeps none (``make_cache()`` is ``None``)."""
    if compile and not use_cache:
        raise InputError("compiling needs the key/value cache (use_cache=True)")
    keeps_cache = model.make_cache() is not None  # growing caches: empty, nothing allocated
    if (static_cache or compile) and not keeps_cache:
        raise InputError(
            "this model's blocks (your own) keep no key/value cache, which static caches and "
            "compiling need: generate without them"
        )
    use_cache = use_cache and keeps_cache
    static = None
    if static_cache or compile:
        static = (input_ids.size(0), input_ids.size(1) + max_new_tokens)  # (B, positions)
        _check_static_caches_fit(model, *static)
    return _LanguageModelStepper(model, use_cache, static, compiled=compile)


def _check_static_caches_fit(model: Any, batch_size: int, positions: int) -> None:
    """Refuse, before allocating them, static caches larger than the memory free on the
    model's device: each layer keeps keys and values ``(B, H_kv, positions, d_head)``, for
    at most the context window's positions."""
    one_entry = model.make_cache(batch_size=1, max_len=1)  # one row, one position per layer
    entry_bytes = sum(2 * cache.k.numel() * cache.k.element_size() for cache in one_entry)
    window = min(positions, model.config.block_size)
    device = next(model.parameters()).device
    refuse_if_short(
        entry_bytes * batch_size * window,
        available_on(device),
        f"static key/value caches for {batch_size:,} row{'s' * (batch_size > 1)} of "
        f"{window:,} positions",
        "generate fewer tokens, a smaller batch, or without static caches",
        where="this machine" if device.type == "cpu" else str(device),
    )


class _Finish:
    """When :func:`generate` stops early: once every row has produced an end-of-sequence
    token or, with ``decode``, new text containing ``stop``."""

    def __init__(
        self,
        input_ids: Tensor,
        eos_id: int | Sequence[int] | None,
        stop: str | None,
        decode: Callable[[list[int]], str] | None,
    ):
        self.prompt_len = input_ids.size(1)
        self.eos_ids = None if eos_id is None else _id_tensor(eos_id, input_ids)  # (n_eos,)
        self.stop, self.decode = stop, decode
        self.done = torch.zeros(input_ids.size(0), dtype=torch.bool, device=input_ids.device)

    def every_row(self, next_id: Tensor, ids: Tensor) -> bool:
        """Whether every row of ``ids (B, T)`` is finished, now that ``next_id (B,)`` is
        its last column."""
        if self.eos_ids is None and self.stop is None:
            return False
        if self.eos_ids is not None:
            self.done |= torch.isin(next_id, self.eos_ids)
        if self.stop is not None:
            assert self.decode is not None  # _check_generate_args: stop needs decode
            self.done |= _contains_stop(ids, self.prompt_len, self.stop, self.decode)
        return bool(self.done.all())

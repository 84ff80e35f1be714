"""Candidate pools of realistic text for the strategy benchmark, and their embeddings.

Each pool item is one candidate response to one of a few prompts, composed from
parts that vary the things annotators react to: whether the core claim is right or
subtly wrong, how much useful detail follows, the tone (plain, friendly, hedging,
curt, salesy), a caveat or not, and a closing line. All text is written here for
the benchmark (no dataset is copied). The hidden utilities of the benchmark are
functions of the embeddings, so what matters is that the pool has the geometry of
real sentence embeddings: clusters per prompt, near-duplicates that differ in one
detail, and many directions of variation.

Embeddings come from the real all-MiniLM-L6-v2 (``models_runtime.embedding``) and
are cached as ``.npy`` next to a hash of the texts, so reruns skip the encoder.

The composed pool is redundant (most items have a near-duplicate, a few principal
components hold most of its variance), so a second pool of real text sits beside
it: ``"hh"``, the final assistant replies of the HH-RLHF harmless-base test file,
each embedded in its prompt context as the app embeds candidates, with
near-duplicates merged (:func:`hh_pool`). Its hidden utility can also be a real
one: a reward model of the project fitted on the file's own chosen/rejected pairs
(:func:`hh_reward_utility`). :func:`pool_features` gives either pool by name.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models_runtime import context
from models_runtime.embedding import Embedder, EmbedderConfig, TransformerEmbedder
from models_runtime.preferences import PreferenceData

if TYPE_CHECKING:
    from benchmarks.real_data import Pair

CACHE_DIR = Path(__file__).resolve().parent / "results" / "cache"
POOLS = ("composed", "hh")
# The composed pool's size in the strategy benchmark (``BenchConfig.pool_size``).
COMPOSED_SIZE = 2_000
# The context the hh replies are embedded in: the brief of this pool is "a reply in
# its prompt context", and of the app's two context choices the last human turn is
# the one that truncates least (31 of 4,624 texts, against 792 for the whole
# conversation) and fits the file best (benchmarks/results/real_data.json).
HH_FEATURES = context.LAST_TURN
# Two items closer than this (cosine of their embeddings) count as one.
NEAR_DUPLICATE_COSINE = 0.98
HH_REWARD_SEED = 0
HH_CV_FOLDS = 5

# Per prompt: (prompt, correct cores, flawed cores, details).
_PROMPTS: list[tuple[str, list[str], list[str], list[str]]] = [
    (
        "How do I reverse a list in Python?",
        ["use slicing with a step of minus one, items[::-1], which returns a new list",
         "call items.reverse(), which reverses the list in place and returns None",
         "use reversed(items), which gives an iterator you can wrap in list()"],
        ["call items.reverse() and assign the result, since it returns the reversed list",
         "use items.sort(reverse=True), which reverses the order of any list",
         "use items[-1:], which returns the list backwards"],
        ["Slicing copies the list, so it costs extra memory for very long lists.",
         "In-place reversal is the cheapest option when you no longer need the original order.",
         "reversed() works on any sequence, including tuples and strings.",
         "For a linked structure such as a deque, use deque.reverse() instead."],
    ),
    (
        "Why is the sky blue?",
        ["sunlight scatters off air molecules, and short blue wavelengths scatter much more than red ones",
         "Rayleigh scattering by nitrogen and oxygen molecules favours short wavelengths, so blue light "
         "reaches us from every direction",
         "air scatters blue light about five times more strongly than red light, so the whole sky glows blue"],
        ["the sky reflects the colour of the oceans",
         "blue light is absorbed less by the ozone layer than any other colour",
         "the atmosphere contains a blue gas that tints the sunlight"],
        ["Violet scatters even more, but our eyes are less sensitive to it and some is absorbed high up.",
         "At sunset the light crosses more air, the blue is scattered away and the sky turns red.",
         "The effect grows with the fourth power of the frequency.",
         "On the Moon, with no air, the sky stays black even in daylight."],
    ),
    (
        "How long should I boil an egg for a runny yolk?",
        ["about six minutes in boiling water, then straight into cold water",
         "six to six and a half minutes from boiling for a large egg, followed by an ice bath",
         "lower the egg into boiling water for six minutes and cool it under the tap"],
        ["about twelve minutes, which keeps the yolk soft",
         "two minutes is enough for any egg",
         "start it in cold water and boil for fifteen minutes"],
        ["Eggs straight from the fridge need about thirty seconds more.",
         "Very fresh eggs are harder to peel; eggs a week old peel more easily.",
         "At high altitude water boils cooler, so add a minute.",
         "A pin hole in the wide end helps stop the shell from cracking."],
    ),
    (
        "What is a race condition?",
        ["a bug where the result depends on the timing of threads or processes that share data",
         "when two threads access shared state without synchronisation and the outcome depends on who runs first",
         "a timing-dependent bug: concurrent operations interleave in an order the code did not expect"],
        ["a bug that only happens when the program runs too slowly",
         "when two programs compete for the fastest CPU core",
         "an error caused by using too many threads at once, whatever they do"],
        ["Locks, atomic operations or message passing are the usual fixes.",
         "They are hard to reproduce because the bad interleaving is rare.",
         "A classic example is two threads incrementing the same counter.",
         "Tools such as thread sanitizers can detect many of them."],
    ),
    (
        "Should I use a hash map or a sorted array for lookups?",
        ["a hash map gives average constant-time lookups, a sorted array logarithmic ones but ordered iteration",
         "use a hash map for fast point lookups and a sorted array when you also need ranges or order",
         "hash maps win for random lookups; sorted arrays are compact and support binary search and ranges"],
        ["a sorted array is always faster because it avoids hashing",
         "hash maps keep keys sorted, so they are better for range queries",
         "both are identical in speed, so it never matters"],
        ["Sorted arrays are slow to insert into, since elements must shift.",
         "Hash maps use more memory because of empty buckets.",
         "For a few dozen keys a linear scan may beat both.",
         "Worst-case hash lookups degrade if many keys collide."],
    ),
]  # fmt: skip

_OPENINGS = {
    "plain": ["", "In short, ", "Simply put, "],
    "friendly": ["Great question! ", "Happy to help: ", "Good one! "],
    "hedging": ["I think ", "I'm not completely sure, but maybe ", "It might be that "],
    "curt": ["Obviously ", "Just ", "Everyone knows "],
    "salesy": ["Amazing tip: ", "You'll love this: ", "Pro secret: "],
}
_CLOSINGS = ["", " Hope that helps.", " Let me know if you need an example.", " That's all there is to it.",
             " Check the documentation for details."]  # fmt: skip


def pool_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct candidate responses (as ``"prompt || response"``), drawn
    deterministically from the compositional space of every prompt's parts."""
    rng = np.random.default_rng(seed)
    combos: list[str] = []
    for prompt, correct, flawed, details in _PROMPTS:
        cores = correct + flawed
        detail_sets = [(), *[(d,) for d in details], *itertools.combinations(details, 2)]
        for core, tone, detail, closing in itertools.product(cores, _OPENINGS, detail_sets, _CLOSINGS):
            opening = _OPENINGS[tone][len(combos) % 3]
            body = f"{opening}{core}."
            body = body[0].upper() + body[1:]
            text = " ".join([body, *detail]) + closing
            combos.append(f"{prompt} || {text}")
    if n > len(combos):
        raise ValueError(f"the pool has {len(combos)} distinct texts, asked for {n}")
    return [combos[i] for i in sorted(rng.choice(len(combos), size=n, replace=False))]


def pool_embedder() -> TransformerEmbedder:
    """MiniLM's last layer alone (384-d), not the app's default of six layers pooled:
    the strategy benchmark's recorded runs (benchmarks/results/strategies.json) were
    made on these pools, and what the strategies are tested on is the pools'
    geometry, which the last layer already has."""
    return TransformerEmbedder(EmbedderConfig(layers=1))


def embedded_pool(n: int = 2_000, seed: int = 0, cache_dir: Path = CACHE_DIR) -> tuple[list[str], np.ndarray]:
    """``pool_texts(n, seed)`` and their MiniLM embeddings ``(n, 384)`` float32, cached
    under ``cache_dir`` by a hash of the texts and the model key."""
    texts = pool_texts(n, seed)
    embedder = pool_embedder()
    digest = hashlib.sha256(("\n".join(texts) + embedder.model_key).encode()).hexdigest()[:16]
    path = cache_dir / f"pool_{n}_{seed}_{digest}.npy"
    if path.exists():
        return texts, np.load(path)
    features = embedder.embed(texts).astype(np.float32)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, features)
    tmp.replace(path)
    return texts, features


def scale_features(base: np.ndarray, n: int, rng: np.random.Generator, noise: float = 0.05) -> np.ndarray:
    """``n`` unit-norm 384-d rows for the scale test: random convex mixtures of two
    real embeddings from ``base`` plus a little isotropic noise, so a 50,000-item pool
    keeps the geometry of real embeddings without encoding 50,000 texts."""
    a = base[rng.integers(0, base.shape[0], n)]
    b = base[rng.integers(0, base.shape[0], n)]
    t = rng.random((n, 1), dtype=np.float32)
    x = t * a + (1 - t) * b + noise * rng.standard_normal(a.shape, dtype=np.float32) / np.sqrt(a.shape[1])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# -- the real-text pool: HH-RLHF replies ------------------------------------------------


def pool_features(name: str, cache_dir: Path = CACHE_DIR) -> np.ndarray:
    """The embedded pool called ``name`` (one of :data:`POOLS`) as ``(P, 384)``
    float32 rows: ``"composed"`` is :func:`embedded_pool` at the benchmark's size,
    ``"hh"`` is :func:`hh_pool`'s features. Both come from the cache after the first
    call."""
    if name == "composed":
        return embedded_pool(COMPOSED_SIZE, cache_dir=cache_dir)[1]
    if name == "hh":
        return hh_pool(cache_dir=cache_dir).features
    raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {name!r}")


@dataclass(frozen=True)
class HHPool:
    """The hh pool: ``texts`` (the embedded text of each kept item), ``features``
    (their embeddings, ``(P, d)`` float32), ``pairs`` (the file's pairs as pool rows,
    ``(n_pairs, 2)`` chosen then rejected, a near-duplicate mapped to the item kept
    for it), ``groups`` (a prompt id per pair) and ``facts`` (how many pairs, texts,
    distinct texts and kept items)."""

    texts: list[str]
    features: np.ndarray
    pairs: np.ndarray
    groups: np.ndarray
    facts: dict[str, int]


def hh_texts(pairs: Sequence[Pair], tokens: context.Tokens) -> tuple[list[str], np.ndarray]:
    """The distinct texts to embed for the replies of ``pairs`` (each in its prompt
    context, :data:`HH_FEATURES`, by the app's own ``context.embedded_text``) and,
    per pair, the indices of its chosen and rejected texts among them."""
    index: dict[str, int] = {}
    rows = np.empty((len(pairs), 2), dtype=np.int64)
    for i, pair in enumerate(pairs):
        for side, response in enumerate((pair.chosen, pair.rejected)):
            text = context.embedded_text(
                prompt_text=pair.prompt, prompt_format="text", response=response, features=HH_FEATURES, tokens=tokens
            ).text
            rows[i, side] = index.setdefault(text, len(index))
    return list(index), rows


def near_duplicate_representatives(features: np.ndarray, threshold: float = NEAR_DUPLICATE_COSINE) -> np.ndarray:
    """For each row of ``features``, the row that stands for it once near-duplicates
    are merged: rows are taken in order and a row is kept unless its cosine with an
    already kept row exceeds ``threshold``, in which case it maps to the most similar
    kept row. Kept rows map to themselves, and no two kept rows are closer than
    ``threshold`` (a chain of near-duplicates cannot drift, as it could with
    connected components)."""
    x = np.asarray(features, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    cosine = x @ x.T
    representative = np.empty(len(x), dtype=np.int64)
    kept: list[int] = []
    for i in range(len(x)):
        if kept:
            similar = cosine[i, kept]
            best = int(np.argmax(similar))
            if similar[best] > threshold:
                representative[i] = kept[best]
                continue
        kept.append(i)
        representative[i] = i
    return representative


def _cached_embeddings(texts: list[str], embedder: Embedder, name: str, cache_dir: Path) -> np.ndarray:
    """``embedder``'s embeddings of ``texts``, cached as ``.npy`` under ``cache_dir``
    by a hash of the texts and the model key (as :func:`embedded_pool` caches)."""
    digest = hashlib.sha256(("\n".join(texts) + embedder.model_key).encode()).hexdigest()[:16]
    path = cache_dir / f"{name}_{len(texts)}_{digest}.npy"
    if path.exists():
        return np.load(path)
    features = embedder.embed(texts).astype(np.float32)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, features)
    tmp.replace(path)
    return features


def hh_pool(data: Path | None = None, cache_dir: Path = CACHE_DIR, embedder: Embedder | None = None) -> HHPool:
    """The hh pool: every final assistant reply (chosen and rejected) of the HH-RLHF
    file ``data``, read by the HH importer's own function (``real_data.load_pairs``),
    embedded in its prompt context (:func:`hh_texts`) by ``embedder`` (default: the
    app's all-MiniLM-L6-v2), exact duplicates dropped and near-duplicates merged
    (:func:`near_duplicate_representatives`). The file is read where it lies,
    ``real_data.DATA`` in the shared data folder by default; only the embeddings are
    cached (about 4 minutes of encoding on two cores the first time)."""
    # The HH importer brings Django's utilities, which the composed pool does not need.
    from benchmarks import real_data  # noqa: PLC0415

    pairs, _ = real_data.load_pairs(real_data.DATA if data is None else data)
    if embedder is None:
        embedder = pool_embedder()
    tokens = embedder.tokens() if hasattr(embedder, "tokens") else context.WhitespaceTokens()
    texts, text_rows = hh_texts(pairs, tokens)
    embedded = _cached_embeddings(texts, embedder, "hh", cache_dir)
    representative = near_duplicate_representatives(embedded)
    kept = np.flatnonzero(representative == np.arange(len(texts)))
    row_of_kept = np.full(len(texts), -1, dtype=np.int64)
    row_of_kept[kept] = np.arange(len(kept))
    return HHPool(
        texts=[texts[i] for i in kept],
        features=np.ascontiguousarray(embedded[kept], dtype=np.float32),
        pairs=row_of_kept[representative[text_rows]],
        groups=real_data.prompt_groups(pairs),
        facts={
            "pairs": len(pairs),
            "replies": 2 * len(pairs),
            "distinct_texts": len(texts),
            "kept_items": len(kept),
        },
    )


def _prompt_folds(groups: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """A fold number per pair: prompts shuffled by ``seed`` and dealt round-robin, so
    every pair of a prompt lies in one fold."""
    unique = np.unique(groups)
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of_prompt = np.empty(len(unique), dtype=np.int64)
    fold_of_prompt[order] = np.arange(len(unique)) % n_folds
    return fold_of_prompt[np.searchsorted(unique, groups)]


def _fit_scores(features: np.ndarray, pairs: np.ndarray, config: Any) -> np.ndarray:
    """Scores of every row by a reward model fitted with ``config`` on ``pairs``
    (chosen first)."""
    from models_runtime.reward import fit_reward_model  # noqa: PLC0415 - torch

    judgments = PreferenceData.from_pairs(pairs[:, 0], pairs[:, 1])
    return fit_reward_model(features, judgments, config).model.scores(features)


def hh_reward_utility(
    data: Path | None = None, cache_dir: Path = CACHE_DIR, embedder: Embedder | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """A real-preference utility of the hh pool: the score of every pool row (raw,
    for the caller to standardise) by the app's default reward model (the single
    head of ``RewardModelConfig``'s defaults, on CPU, seed :data:`HH_REWARD_SEED`)
    fitted on all of the file's chosen/rejected pairs, and facts about it.

    Pairs whose two replies were merged into one item carry no comparison and are
    left out. The facts say how many pairs were used and how much real signal the
    utility carries: the same fit's pairwise accuracy in a :data:`HH_CV_FOLDS`-fold
    cross-validation by prompt (every pair of a prompt in one fold; a tie counts
    half), its accuracy on the pairs it was fitted on, and the fit's settings (the
    app's defaults may change). Both are cached under
    ``cache_dir`` by a hash of the pool and the fit's settings."""
    from models_runtime.reward import RewardModelConfig  # noqa: PLC0415 - torch

    config = RewardModelConfig(device="cpu", seed=HH_REWARD_SEED)
    pool = hh_pool(data, cache_dir, embedder)
    pairs = pool.pairs[pool.pairs[:, 0] != pool.pairs[:, 1]]
    groups = pool.groups[pool.pairs[:, 0] != pool.pairs[:, 1]]
    key = hashlib.sha256()
    for part in (pool.features, pairs, groups):
        key.update(np.ascontiguousarray(part).tobytes())
    key.update(f"{config!r}/{HH_CV_FOLDS}".encode())
    path = cache_dir / f"hh_reward_{key.hexdigest()[:16]}.npz"
    if path.exists():
        with np.load(path) as saved:
            return saved["utility"], json.loads(str(saved["facts"]))

    def accuracy(scores: np.ndarray, rows: np.ndarray) -> float:
        chosen, rejected = scores[rows[:, 0]], scores[rows[:, 1]]
        return float(np.mean((chosen > rejected) + 0.5 * (chosen == rejected)))

    folds = _prompt_folds(groups, HH_CV_FOLDS, HH_REWARD_SEED)
    fold_accuracy = []
    for fold in range(HH_CV_FOLDS):
        scores = _fit_scores(pool.features, pairs[folds != fold], config)
        fold_accuracy.append(accuracy(scores, pairs[folds == fold]))
    utility = _fit_scores(pool.features, pairs, config)
    facts = {
        **pool.facts,
        "pairs_used": len(pairs),
        "pairs_merged_into_one_item": int(len(pool.pairs) - len(pairs)),
        "cv_folds": HH_CV_FOLDS,
        "cv_accuracy_mean": round(float(np.mean(fold_accuracy)), 4),
        "cv_accuracy_sd": round(float(np.std(fold_accuracy, ddof=1)), 4),
        "cv_accuracy_per_fold": [round(a, 4) for a in fold_accuracy],
        "train_accuracy": round(accuracy(utility, pairs), 4),
        "reward_config": repr(config),
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, utility=utility, facts=np.array(json.dumps(facts)))
    tmp.replace(path)
    return utility, facts

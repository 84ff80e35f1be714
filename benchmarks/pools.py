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
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import numpy as np

from models_runtime.embedding import TransformerEmbedder

CACHE_DIR = Path(__file__).resolve().parent / "results" / "cache"

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


def embedded_pool(n: int = 2_000, seed: int = 0, cache_dir: Path = CACHE_DIR) -> tuple[list[str], np.ndarray]:
    """``pool_texts(n, seed)`` and their MiniLM embeddings ``(n, 384)`` float32, cached
    under ``cache_dir`` by a hash of the texts and the model key."""
    texts = pool_texts(n, seed)
    embedder = TransformerEmbedder()
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

"""Train the complaint model: ``python -m transcripts.train_complaints [--out PATH] [--nested]``.

Deterministic: the same data and lexicons give the same ``complaint_model.json``. It trains only on
the development data, tests/data/complaints_labelled.jsonl and complaints_heldout.jsonl; the second
held-out set is never read here. Hyperparameters (n-gram ranges, whether the agent's lines count,
how much the lexicon features are trusted, the L2 penalty) and the decision threshold are chosen by
stratified 5-fold cross-validation, repeated twice; ``--nested`` also prints a nested
cross-validated F1 (the choice itself made inside each outer fold), the honest dev figure.

The model is an L2-regularised logistic regression, fitted by Newton's method in its dual form:
with a few hundred transcripts and tens of thousands of n-grams, the n x n kernel is the small side.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from transcripts.complaint_detector import ComplaintDetector, Utterance
from transcripts.complaint_model import (
    MODEL_PATH,
    FeatureConfig,
    lexicon_digest,
    lexicon_features,
    sparse_features,
    transcript_ngrams,
)

log = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
DEV_SETS = ("complaints_labelled.jsonl", "complaints_heldout.jsonl")
FOLDS = 5
REPEATS = 2
SEED = 20240605
MIN_DF = 2
CHAR_RANGES = ((1, 3), (2, 4), (1, 4))
AGENT = (True, False)
LEX_SCALES = (0.25, 0.5, 1.0)
PENALTIES = (0.03, 0.1, 0.3, 1.0)
THRESHOLDS = tuple(round(0.2 + 0.02 * i, 2) for i in range(31))


@dataclass
class Example:
    id: str
    lang: str
    label: bool
    turns: list[Utterance]
    lexical: dict[str, float]
    grams: dict[FeatureConfig, dict[str, dict[str, int]]] = field(default_factory=dict)

    def ngrams(self, config: FeatureConfig) -> dict[str, dict[str, int]]:
        if config not in self.grams:
            self.grams[config] = transcript_ngrams(self.turns, config)
        return self.grams[config]


@dataclass(frozen=True)
class Choice:
    config: FeatureConfig
    penalty: float
    threshold: float
    f1: float


def load_dev(data: Path = DATA) -> list[dict[str, Any]]:
    rows = []
    for name in DEV_SETS:
        with (data / name).open(encoding="utf-8") as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


def examples(rows: Iterable[dict[str, Any]], detector: ComplaintDetector) -> list[Example]:
    threshold = detector.lexicon_threshold
    found = []
    for row in rows:
        turns = [Utterance.of(u) for u in row["utterances"]]
        result = detector.detect_lexicon(turns, row["lang"])
        found.append(Example(row["id"], row["lang"], bool(row["label"]), turns,
                             lexicon_features(result, threshold)))
    return found


def folds(items: Sequence[Example], seed: int, k: int = FOLDS) -> list[np.ndarray]:
    """Stratified by language and label, shuffled with a fixed seed."""
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(items), dtype=int)
    strata = sorted({(e.lang, e.label) for e in items})
    offset = 0
    for stratum in strata:
        members = [i for i, e in enumerate(items) if (e.lang, e.label) == stratum]
        members = [members[j] for j in rng.permutation(len(members))]
        for position, i in enumerate(members):
            assignment[i] = (position + offset) % k
        offset += len(members)
    return [np.flatnonzero(assignment == f) for f in range(k)]


class Design:
    """Feature matrices for one training subset and one n-gram configuration."""

    def __init__(self, items: Sequence[Example], train: np.ndarray, config: FeatureConfig):
        self.config = config
        self.grams = [e.ngrams(config) for e in items]
        counts: dict[str, int] = {}
        for i in train:
            for block, grams in self.grams[i].items():
                for g in grams:
                    counts[f"{block}|{g}"] = counts.get(f"{block}|{g}", 0) + 1
        vocabulary = {name for name, n in counts.items() if n >= MIN_DF}
        values = [sparse_features(e.lang, g, e.lexical, _unscaled(config), vocabulary)
                  for e, g in zip(items, self.grams, strict=True)]
        names = sorted({n for i in train for n in values[i]})
        self.names = names
        self.ngram = _matrix(values, names, lambda n: n[:2] in ("c|", "a|"))
        self.other = _matrix(values, names, lambda n: n[:2] not in ("c|", "a|"))

    def kernel(self, rows: np.ndarray, cols: np.ndarray, lex_scale: float) -> np.ndarray:
        ngram = self.ngram[rows] @ self.ngram[cols].T
        kernel: np.ndarray = ngram + lex_scale**2 * (self.other[rows] @ self.other[cols].T)
        return kernel

    def weights(self, train: np.ndarray, alpha: np.ndarray, lex_scale: float) -> dict[str, float]:
        primal = self.ngram[train].T @ alpha + lex_scale * (self.other[train].T @ alpha)
        return {n: float(w) for n, w in zip(self.names, primal, strict=True) if w != 0.0}


def _unscaled(config: FeatureConfig) -> FeatureConfig:
    return FeatureConfig(config.char_min, config.char_max, config.words, config.agent, 1.0)


def _matrix(values: list[dict[str, float]], names: list[str], keep: Any) -> np.ndarray:
    index = {n: j for j, n in enumerate(names)}
    matrix = np.zeros((len(values), len(names)))
    for i, row in enumerate(values):
        for name, value in row.items():
            if name in index and keep(name):
                matrix[i, index[name]] = value
    return matrix


def fit_dual(kernel: np.ndarray, y: np.ndarray, penalty: float) -> np.ndarray:
    """Minimise sum(log-loss(K a)) + penalty/2 a'Ka by damped Newton steps; w = X'a."""
    alpha = np.zeros(len(y))

    def objective(a: np.ndarray) -> float:
        f = kernel @ a
        return float(np.sum(np.logaddexp(0.0, f) - y * f) + penalty / 2 * a @ f)

    current = objective(alpha)
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(kernel @ alpha)))
        gradient = p - y + penalty * alpha
        hessian = (p * (1 - p))[:, None] * kernel + penalty * np.eye(len(y))
        step = np.linalg.solve(hessian, -gradient)
        t = 1.0
        while t > 1e-6 and objective(alpha + t * step) > current:
            t /= 2
        alpha, previous = alpha + t * step, current
        current = objective(alpha)
        if previous - current < 1e-9:
            break
    return alpha


def f1(labels: np.ndarray, guesses: np.ndarray) -> float:
    tp = float(np.sum(labels & guesses))
    fp, fn = float(np.sum(~labels & guesses)), float(np.sum(labels & ~guesses))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def out_of_fold(
    items: Sequence[Example], subset: np.ndarray, configs: Sequence[FeatureConfig],
    penalties: Sequence[float], seeds: Sequence[int],
) -> dict[tuple[FeatureConfig, float], np.ndarray]:
    """Out-of-fold probabilities on ``subset``, per (config, penalty), one column per seed."""
    y = np.array([e.label for e in items], dtype=float)
    found: dict[tuple[FeatureConfig, float], np.ndarray] = {}
    sub_items = [items[i] for i in subset]
    for r, seed in enumerate(seeds):
        for fold in folds(sub_items, seed):
            test = subset[fold]
            train = np.setdiff1d(subset, test)
            for base in {_unscaled(c) for c in configs}:
                design = Design(items, train, base)
                for config in [c for c in configs if _unscaled(c) == base]:
                    k_train = design.kernel(train, train, config.lex_scale)
                    k_test = design.kernel(test, train, config.lex_scale)
                    for penalty in penalties:
                        alpha = fit_dual(k_train, y[train], penalty)
                        key = (config, penalty)
                        found.setdefault(key, np.zeros((len(items), len(seeds))))
                        found[key][test, r] = 1.0 / (1.0 + np.exp(-(k_test @ alpha)))
    return {k: v[subset] for k, v in found.items()}


def choose(
    items: Sequence[Example], subset: np.ndarray, configs: Sequence[FeatureConfig],
    penalties: Sequence[float], seeds: Sequence[int],
) -> Choice:
    """The configuration, penalty and threshold with the best mean out-of-fold F1."""
    labels = np.array([items[i].label for i in subset])
    best = None
    for (config, penalty), probs in out_of_fold(items, subset, configs, penalties, seeds).items():
        for threshold in THRESHOLDS:
            score = np.mean([f1(labels, probs[:, r] >= threshold) for r in range(len(seeds))])
            if best is None or score > best.f1 + 1e-12:
                best = Choice(config, penalty, threshold, float(score))
    assert best is not None
    return best


def grid() -> list[FeatureConfig]:
    return [FeatureConfig(lo, hi, True, agent, scale)
            for (lo, hi), agent, scale in itertools.product(CHAR_RANGES, AGENT, LEX_SCALES)]


def cross_validated_f1(
    items: Sequence[Example], config: FeatureConfig, penalty: float, threshold: float,
    seed: int = SEED,
) -> dict[str, float]:
    """F1 per language and overall of out-of-fold predictions with fixed hyperparameters."""
    everything = np.arange(len(items))
    probs = out_of_fold(items, everything, [config], [penalty], [seed])[(config, penalty)][:, 0]
    return per_language(items, probs >= threshold)


def per_language(items: Sequence[Example], guesses: np.ndarray) -> dict[str, float]:
    labels = np.array([e.label for e in items])
    langs = np.array([e.lang for e in items])
    scores = {lang: f1(labels[langs == lang], guesses[langs == lang])
              for lang in sorted(set(langs))}
    return scores | {"overall": f1(labels, guesses)}


def nested(items: Sequence[Example]) -> dict[str, float]:
    """Outer folds score a choice made by cross-validation inside each outer training set."""
    guesses = np.zeros(len(items), dtype=bool)
    for fold in folds(items, SEED + 1):
        train = np.setdiff1d(np.arange(len(items)), fold)
        choice = choose(items, train, grid(), PENALTIES, [SEED])
        design = Design(items, train, _unscaled(choice.config))
        scale = choice.config.lex_scale
        y = np.array([items[i].label for i in train], dtype=float)
        alpha = fit_dual(design.kernel(train, train, scale), y, choice.penalty)
        probs = 1.0 / (1.0 + np.exp(-(design.kernel(fold, train, scale) @ alpha)))
        guesses[fold] = probs >= choice.threshold
        log.info("outer fold: %s", choice)
    return per_language(items, guesses)


def train(items: Sequence[Example], choice: Choice) -> dict[str, float]:
    everything = np.arange(len(items))
    design = Design(items, everything, _unscaled(choice.config))
    y = np.array([e.label for e in items], dtype=float)
    scale = choice.config.lex_scale
    alpha = fit_dual(design.kernel(everything, everything, scale), y, choice.penalty)
    weights = design.weights(everything, alpha, scale)
    return {n: round(w, 6) for n, w in sorted(weights.items())}


def build(detector: ComplaintDetector, run_nested: bool) -> dict[str, Any]:
    items = examples(load_dev(), detector)
    lexicon_only = per_language(
        items, np.array([e.lexical["lex:fires"] > 0 for e in items]))
    choice = choose(items, np.arange(len(items)), grid(), PENALTIES, [SEED, SEED + 7])
    report: dict[str, Any] = {
        "dev_sets": list(DEV_SETS),
        "folds": FOLDS,
        "repeats": REPEATS,
        "chosen_f1": round(choice.f1, 4),
        "per_language": {k: round(v, 4) for k, v in
                         cross_validated_f1(items, choice.config, choice.penalty,
                                            choice.threshold, SEED + 13).items()},
        "lexicon_only": {k: round(v, 4) for k, v in lexicon_only.items()},
    }
    if run_nested:
        report["nested"] = {k: round(v, 4) for k, v in nested(items).items()}
    lexicons = Path(__file__).with_name("lexicons")
    return {
        "languages": sorted({e.lang for e in items}),
        "config": asdict(choice.config),
        "penalty": choice.penalty,
        "threshold": choice.threshold,
        "lexicon_threshold": detector.lexicon_threshold,
        "lexicon_digests": {p.stem: lexicon_digest(p) for p in sorted(lexicons.glob("*.json"))},
        "cross_validation": report,
        "weights": train(items, choice),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=MODEL_PATH)
    parser.add_argument("--nested", action="store_true", help="also print nested CV F1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model = build(ComplaintDetector(model=None), args.nested)
    args.out.write_text(json.dumps(model, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print(json.dumps({k: model[k] for k in ("config", "penalty", "threshold")}))
    print(json.dumps(model["cross_validation"], indent=2))
    print(f"{len(model['weights'])} weights written to {args.out}")


if __name__ == "__main__":
    main()

import json
from collections import Counter
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from transcripts.complaint_detector import (
    ComplaintDetector,
    DetectionResult,
    Utterance,
    detect_command,
    detect_language,
    load_lexicons,
    parse_transcript,
)
from transcripts.complaint_model import ComplaintModel
from transcripts.train_complaints import Choice, cross_validated_f1, examples, load_dev, train

LABELLED = Path(__file__).parent / "data" / "complaints_labelled.jsonl"
LANGUAGES = ("en", "zh", "ko")


@pytest.fixture(scope="module")
def detector() -> ComplaintDetector:
    return ComplaintDetector()


@pytest.fixture(scope="module")
def lexicon_only() -> ComplaintDetector:
    return ComplaintDetector(model=None)


@pytest.fixture(scope="module")
def model() -> ComplaintModel:
    return ComplaintModel.load()


def customer(*texts: str) -> list[Utterance]:
    return [Utterance("customer", t) for t in texts]


def weights(result: DetectionResult) -> dict[str, float]:
    return {t["term"]: t["weight"] for e in result.evidence for t in e["terms"]}


def load_labelled() -> list[dict]:
    with LABELLED.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def precision_recall_f1(pairs: list[tuple[bool, bool]]) -> tuple[float, float, float]:
    tp = sum(1 for gold, guess in pairs if gold and guess)
    fp = sum(1 for gold, guess in pairs if guess and not gold)
    fn = sum(1 for gold, guess in pairs if gold and not guess)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def test_labelled_set_is_large_balanced_and_trilingual():
    rows = load_labelled()
    per_language = Counter(r["lang"] for r in rows)
    assert len(rows) >= 240
    assert per_language["en"] >= 80 and per_language["zh"] >= 80 and per_language["ko"] >= 40
    assert 0.4 <= sum(r["label"] for r in rows) / len(rows) <= 0.6
    assert all((r["category"] is None) == (not r["label"]) for r in rows)
    assert len({r["id"] for r in rows}) == len(rows)


def test_lexicons_alone_reach_f1_targets_on_the_labelled_set(lexicon_only):
    """The lexicons were tuned on this set: a fit, not a measurement."""
    scores = report(lexicon_only, "labelled set, lexicons only (tuned on it)", load_labelled())
    assert scores["overall"][2] >= 0.85
    for language in LANGUAGES:
        assert scores[language][2] >= 0.8, language


def test_model_reaches_f1_target_in_cross_validation_on_the_dev_sets(model):
    """Out-of-fold predictions on labelled + held-out 1 with the shipped hyperparameters.

    They were chosen by cross-validation on the same data, so this is slightly optimistic; the
    nested cross-validated figure (``python -m transcripts.train_complaints --nested``) is stored
    in the model file and printed here too.
    """
    items = examples(load_dev(), ComplaintDetector(model=None))
    scores = cross_validated_f1(items, model.config, model.penalty, model.threshold)
    print("\nlexicons + model, 5-fold cross-validated F1 on the dev sets (labelled + held-out 1)")
    print("  " + "  ".join(f"{k}={v:.3f}" for k, v in scores.items()))
    nested = model.cross_validation.get("nested", {})
    print("  nested: " + "  ".join(f"{k}={v:.3f}" for k, v in nested.items()))
    assert scores["overall"] >= 0.85 and nested["overall"] >= 0.85
    for language in LANGUAGES:
        assert scores[language] >= 0.8, language


def test_training_is_deterministic_and_reproduces_the_shipped_weights(model):
    items = examples(load_dev(), ComplaintDetector(model=None))
    weights = train(items, Choice(model.config, model.penalty, model.threshold, 0.0))
    assert weights.keys() == model.weights.keys()
    assert all(abs(weights[k] - model.weights[k]) < 1e-4 for k in weights)


def test_explicit_complaint_is_detected(detector):
    result = detector.detect(customer("I want to file a complaint about your service."), "en")
    assert result.is_complaint and result.score >= detector.model.threshold


def test_negated_complaint_word_is_not_a_complaint(detector):
    result = detector.detect(customer("No complaints, just a question about my bill."))
    assert not result.is_complaint
    assert not detector.detect(customer("我不是要投诉，就是问一下账单。")).is_complaint


def test_double_negation_is_not_a_complaint(detector):
    zh = detector.detect(customer("我对你们的服务没有不满意，就是想问一下积分。"))
    en = detector.detect(customer("I'm not unhappy with the service, I just want to upgrade."))
    assert not zh.is_complaint and not en.is_complaint
    assert weights(zh)["不满意"] < 0 and weights(en)["unhappy"] < 0


def test_negated_expectation_is_evidence_of_a_complaint(detector):
    result = detector.detect(customer("My parcel never arrived."), "en")
    assert result.is_complaint and result.category == "delivery"
    assert weights(detector.detect(customer("My parcel arrived."), "en")) == {}


def test_rhetorical_negated_question_still_complains(detector):
    result = detector.detect(customer("广告说免费安装，又要收安装费，这不是虚假宣传吗？"))
    assert result.is_complaint and weights(result)["虚假宣传"] > 0


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("The blender stopped working after two days, it's defective.", "product_quality"),
        ("Your agent was rude and hung up on me.", "service_attitude"),
        ("The package is two weeks late and the box was damaged.", "delivery"),
        ("I was charged twice and I want a refund.", "billing_refund"),
        ("你们把我的个人信息泄露了，天天接到骚扰电话。", "other"),
        ("快递一直没收到，物流也不更新。", "delivery"),
        ("客服态度太差了，还挂我电话。", "service_attitude"),
        ("같은 요금이 두 번 결제됐어요.", "billing_refund"),
        ("산 지 일주일 된 노트북이 고장 났어요.", "product_quality"),
    ],
)
def test_complaint_is_put_in_its_category(detector, text, category):
    result = detector.detect(customer(text))
    assert result.is_complaint and result.category == category


def test_intensifier_multiplies_the_weight(detector):
    plain = weights(detector.detect(customer("The agent was rude."), "en"))["rude"]
    strong = weights(detector.detect(customer("The agent was extremely rude."), "en"))["rude"]
    assert strong == pytest.approx(plain * 1.8)
    zh = detector.detect(customer("物流非常慢。"))
    assert zh.evidence[0]["terms"][0]["intensifier"] == "非常"


def test_evidence_names_the_utterance_speaker_and_terms(detector):
    turns = [
        Utterance("customer", "Hi, I have a question."),
        Utterance("agent", "Sure."),
        Utterance("customer", "My new phone is broken and the screen is cracked."),
    ]
    result = detector.detect(turns, "en")
    assert [e["utterance_index"] for e in result.evidence if e["terms"]] == [2]
    evidence = next(e for e in result.evidence if e["terms"])
    assert evidence["speaker"] == "customer" and evidence["text"] == turns[2].text
    assert {t["term"] for t in evidence["terms"]} == {"broken", "cracked"}
    assert all(t["category"] == "product_quality" for t in evidence["terms"])


def test_agent_apology_alone_is_weak_evidence(detector):
    turns = [
        Utterance("customer", "Can I change my delivery date to Friday?"),
        Utterance("agent", "I'm sorry for the trouble, I've moved it to Friday."),
    ]
    result = detector.detect(turns, "en")
    assert not result.is_complaint
    assert 0 < weights(result)["sorry for the trouble"] < 0.6


def test_customer_words_count_more_than_the_same_words_from_the_agent(detector):
    """In the lexicon score; the model learns its own weights for the agent's lines."""
    said = [Utterance("customer", "This is unacceptable.")]
    echoed = [Utterance("agent", "This is unacceptable.")]
    assert detector.detect(said, "en").lexicon_score > detector.detect(echoed, "en").lexicon_score


def test_model_evidence_names_the_ngrams_that_pushed_it(detector):
    result = detector.detect(customer("My new phone is broken and the screen is cracked."), "en")
    assert result.scorer == "model" and result.is_complaint
    grams = result.evidence[0]["ngrams"]
    assert 0 < len(grams) <= 5 and all(g["weight"] > 0 for g in grams)
    quiet = detector.detect(customer("I'd like to check my gift card balance."), "en")
    assert not quiet.is_complaint and all("ngrams" not in e for e in quiet.evidence)


def test_language_is_detected_from_the_script(detector):
    assert detect_language("불만이 있어요") == "ko"
    assert detect_language("我要投诉") == "zh"
    assert detect_language("I want to complain") == "en"
    assert detector.detect(customer("我要投诉你们的快递")).language == "zh"
    assert detector.detect(customer("배송이 너무 늦어요")).language == "ko"


def test_korean_negation_after_the_term(detector):
    assert not detector.detect(customer("불만은 없어요. 그냥 문의드려요.")).is_complaint
    assert not detector.detect(customer("불만 아니에요.")).is_complaint
    assert detector.detect(customer("정말 불만이에요.")).is_complaint
    arrived = detector.detect(customer("주문한 물건이 아직 도착 안 했어요."))
    assert arrived.is_complaint and arrived.category == "delivery"
    assert not detector.detect(customer("카드 분실 신고 하려고요.")).is_complaint


def test_unknown_language_falls_back_to_the_script_then_english(detector):
    assert detector.detect(customer("I want to file a complaint."), "fr").language == "en"
    assert detector.detect(customer("我要投诉"), "xx").language == "zh"


def test_empty_transcript_is_not_a_complaint(detector):
    result = detector.detect([])
    assert result == DetectionResult(False, 0.0, None, "en", [])


def test_threshold_is_configurable():
    strict = ComplaintDetector(threshold=0.99)
    result = strict.detect(customer("The agent was rude."), "en")
    assert not result.is_complaint and result.score > 0


def test_result_serialises_to_json(detector):
    result = detector.detect(customer("我要投诉"))
    data = json.loads(json.dumps(result.to_dict(), ensure_ascii=False))
    assert data["is_complaint"] is True and data["language"] == "zh"
    assert "投诉" in data["evidence"][0]["terms"][0]["term"]


def test_a_language_is_added_by_adding_a_lexicon_file(tmp_path):
    lexicon = {
        "negators": ["non"],
        "intent": {"plainte": 1.0},
        "categories": {"delivery": {"terms": {"retard": 0.8}}},
    }
    (tmp_path / "fr.json").write_text(json.dumps(lexicon), encoding="utf-8")
    lexicons = load_lexicons(tmp_path)
    assert list(lexicons) == ["fr"]
    detector = ComplaintDetector(lexicons)
    assert detector.detect(customer("Je veux faire une plainte: retard."), "fr").is_complaint
    assert not detector.detect(customer("non plainte"), "fr").is_complaint
    assert detector.detect(customer("plainte")).language == "fr"  # the only lexicon there is
    assert detector.detect(customer("plainte")).scorer == "lexicon"  # the model knows no French


def test_chinese_lexicon_terms_segment_as_units(detector):
    tokens = detector.tokenize(detector.lexicons["zh"], "我没有不满意，还没收到")
    assert "不满意" in tokens and "没收到" in tokens


def test_transcript_lines_default_to_the_customer():
    turns = parse_transcript("agent: how can I help?\nmy parcel is late\n\nCustomer： again\n")
    assert turns == [
        Utterance("agent", "how can I help?"),
        Utterance("customer", "my parcel is late"),
        Utterance("customer", "again"),
    ]


def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def complaints() -> None:
        """Complaint tools."""

    app.command("detect")(detect_command)
    return app


def test_detect_command_prints_the_result_as_json():
    transcript = "agent: 您好，请问有什么可以帮您？\ncustomer: 我要投诉，快递一直没收到\n"
    result = CliRunner().invoke(cli(), ["detect"], input=transcript)
    assert result.exit_code == 0, result.output
    assert "投诉" in result.stdout  # ensure_ascii=False keeps the text readable
    data = json.loads(result.stdout)
    assert data["is_complaint"] and data["language"] == "zh"
    assert [e["utterance_index"] for e in data["evidence"] if e["terms"]] == [1]


def test_detect_command_takes_the_language_option():
    result = CliRunner().invoke(cli(), ["detect", "--lang", "en"], input="no complaints here\n")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["language"] == "en" and not data["is_complaint"]


DATA = Path(__file__).parent / "data"
# Evaluated once, after the model was chosen and trained: F1 0.866 (en 0.852, zh 0.885, ko 0.857).
HELDOUT2_FLOOR = 0.84


def report(detector: ComplaintDetector, name: str, rows: list[dict], itemise: bool = False) -> dict:
    results = {r["id"]: detector.detect(r["utterances"], r["lang"]) for r in rows}
    scores = {}
    print(f"\n{name}")
    for language in (*LANGUAGES, "overall"):
        chosen = [r for r in rows if language in ("overall", r["lang"])]
        pairs = [(r["label"], results[r["id"]].is_complaint) for r in chosen]
        scores[language] = precision_recall_f1(pairs)
        p, r, f = scores[language]
        print(f"  {language:8} n={len(chosen):3}  precision={p:.3f}  recall={r:.3f}  f1={f:.3f}")
    found = [r for r in rows if r["label"] and results[r["id"]].is_complaint]
    right = sum(results[r["id"]].category == r["category"] for r in found)
    print(f"  category accuracy on detected complaints: {right}/{len(found)}")
    for r in [r for r in rows if itemise and r["label"] != results[r["id"]].is_complaint]:
        kind = "missed" if r["label"] else "false alarm"
        print(f"  {kind:11} {r['id']}  score={results[r['id']].score:.2f}")
    return scores


def load_set(name: str) -> list[dict]:
    with (DATA / name).open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    assert all((r["category"] is None) == (not r["label"]) for r in rows)
    assert len({r["id"] for r in rows}) == len(rows)
    return rows


def test_detector_on_the_first_held_out_set(detector, lexicon_only):
    """Written without looking at the lexicons; since used as development data for tuning them
    and, with the labelled set, to train the model.

    Its phrases were not copied into the lexicons, but its errors guided what was added, so the
    lexicon figure is optimistic too; the model's figure here is a training fit (see the
    cross-validated test for the measurement).
    """
    rows = load_set("complaints_heldout.jsonl")
    assert Counter(r["lang"] for r in rows) == {"en": 60, "zh": 60, "ko": 30}
    scores = report(lexicon_only, "held-out 1 (development data), lexicons only", rows, True)
    report(detector, "held-out 1, lexicons + model (trained on it: a fit)", rows)
    assert scores["overall"][2] >= 0.8


def test_labelled_set_with_the_model_is_a_training_fit(detector):
    scores = report(detector, "labelled set, lexicons + model (trained on it: a fit)",
                    load_labelled())
    assert scores["overall"][2] >= 0.85


def test_detector_on_the_second_held_out_set_reports_honest_scores(detector, lexicon_only):
    """Written before the detector was changed, and never looked at item by item while tuning
    the lexicons or choosing and training the model (which never reads it).

    The only set whose figure says how the detector does on unseen text. Its author also wrote
    lexicon entries, so it is not fully independent; entries recalled from its transcripts were
    taken out again. The floors are what the detectors reached, not the issue's target.
    """
    rows = load_set("complaints_heldout2.jsonl")
    assert len(rows) >= 150 and set(Counter(r["lang"] for r in rows)) == set(LANGUAGES)
    assert 0.45 <= sum(r["label"] for r in rows) / len(rows) <= 0.55
    alone = report(lexicon_only, "held-out 2 (never tuned on), lexicons only", rows)
    scores = report(detector, "held-out 2 (never tuned on), lexicons + model", rows)
    assert alone["overall"][2] >= 0.7
    assert scores["overall"][2] >= HELDOUT2_FLOOR


def test_a_conditional_or_a_mistaken_belief_weakens_the_evidence(detector):
    asked = customer("What happens if the vase arrives damaged?")
    assert not detector.detect(asked, "en").is_complaint
    assert detector.detect(customer("The vase arrived damaged."), "en").is_complaint
    assert not detector.detect(customer("我以为被扣了两次钱，原来是预授权。")).is_complaint


def test_what_comes_before_a_change_of_subject_is_not_the_calls_business(detector):
    said = customer("I'm furious with my landlord. Anyway, I need a new router.")
    assert not detector.detect(said, "en").is_complaint


def test_english_inflections_and_chinese_negated_words_reach_the_lexicon(detector):
    lexicon = detector.lexicons["en"]
    assert "leak" in lexicon.stems("leaking") and "jam" in lexicon.stems("jammed")
    assert detector.detect(customer("我根本没拿到快递。")).is_complaint

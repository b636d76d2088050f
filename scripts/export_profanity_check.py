"""Export alt-profanity-check's scikit-learn model to a plain JSON data file.

Run by scripts/export_profanity_check.sh inside a throwaway venv that holds
exactly scikit-learn 1.9.1, joblib 1.6.0 and the alt-profanity-check 1.9.1
wheel (the pickles only load with that scikit-learn). Two commands:

    python export_profanity_check.py export OUT.json WHEEL_SHA256
    python export_profanity_check.py reference RTP_DIR OUT_DIR

`export` writes everything `predict_prob` needs (vectorizer settings,
vocabulary, idf, the LinearSVC weights and sigmoid calibrator of every
calibration fold) plus the Unicode tables of this Python's `re` `\\w` and
`str.lower()` that the Rust tokenizer reproduces. `reference` writes the
fixtures the Rust tests compare against (package scores and token lists).
"""

import json
import re
import sys
import unicodedata

import numpy as np
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.svm import LinearSVC

import profanity_check
from profanity_check import profanity_check as pc

EXPECTED = {
    "analyzer": "word",
    "binary": False,
    "lowercase": True,
    "ngram_range": (1, 1),
    "norm": "l2",
    "preprocessor": None,
    "smooth_idf": True,
    "strip_accents": None,
    "sublinear_tf": False,
    "token_pattern": r"(?u)\b\w\w+\b",
    "tokenizer": None,
    "use_idf": True,
    "stop_words": "english",
}


def ranges(pred):
    """Sorted inclusive code point ranges [lo, hi] where pred holds."""
    out = []
    start = None
    for cp in range(0x110000):
        ok = pred(cp)
        if ok and start is None:
            start = cp
        elif not ok and start is not None:
            out.append([start, cp - 1])
            start = None
    if start is not None:
        out.append([start, 0x10FFFF])
    return out


def unicode_tables():
    word = re.compile(r"(?u)\w")
    word_ranges = ranges(
        lambda cp: not 0xD800 <= cp <= 0xDFFF and word.fullmatch(chr(cp)) is not None
    )
    lower = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF or cp == 0x03A3:
            continue
        c = chr(cp)
        if c.lower() != c:
            lower.append([cp, c.lower()])

    # Final sigma (Python's handle_capital_sigma) needs Case_Ignorable and
    # Cased; Python exposes neither, so read them off str.lower() itself:
    # "A" c "Σ" ends in ς iff c is case-ignorable or cased; " " c "Σ" ends in
    # ς iff c is cased and not case-ignorable (the scan skips ignorables).
    def t1(cp):
        return ("A" + chr(cp) + "\u03a3").lower()[-1] == "\u03c2"

    def t2(cp):
        return (" " + chr(cp) + "\u03a3").lower()[-1] == "\u03c2"

    def ok(cp):
        return not 0xD800 <= cp <= 0xDFFF

    ignorable = ranges(lambda cp: ok(cp) and t1(cp) and not t2(cp))
    cased = ranges(lambda cp: ok(cp) and t2(cp))
    return {
        "unicode_version": unicodedata.unidata_version,
        "word_ranges": word_ranges,
        "lower": lower,
        "case_ignorable_ranges": ignorable,
        "cased_ranges": cased,
    }


def export(out_path, wheel_sha256):
    vec, model = pc.vectorizer, pc.model
    assert isinstance(vec, TfidfVectorizer), type(vec)
    assert isinstance(model, CalibratedClassifierCV), type(model)
    params = vec.get_params()
    for key, want in EXPECTED.items():
        assert params[key] == want, (key, params[key], want)
    assert vec.idf_.dtype == np.float64
    n = len(vec.vocabulary_)
    terms = [None] * n
    for term, i in vec.vocabulary_.items():
        terms[i] = term
    assert all(t is not None for t in terms)
    # Stop words are removed before the vocabulary lookup; none is in the
    # vocabulary, so the lookup alone reproduces the analyzer.
    assert not set(terms) & ENGLISH_STOP_WORDS
    assert model.method == "sigmoid", model.method
    assert list(model.classes_) == [0, 1], model.classes_
    folds = []
    for cc in model.calibrated_classifiers_:
        est = cc.estimator
        assert isinstance(est, LinearSVC), type(est)
        assert est.coef_.shape == (1, n), est.coef_.shape
        assert cc.method == "sigmoid" and len(cc.calibrators) == 1
        cal = cc.calibrators[0]
        folds.append(
            {
                "intercept": float(est.intercept_[0]),
                "a": float(cal.a_),
                "b": float(cal.b_),
                "coef": [float(x) for x in est.coef_[0]],
            }
        )
    doc = {
        "format": "repro.profanity_check/1",
        "source": {
            "package": "alt-profanity-check",
            "version": "1.9.1",
            "wheel_sha256": wheel_sha256,
            "sklearn": sklearn.__version__,
            "python": sys.version.split()[0],
            "files": ["profanity_check/data/vectorizer.joblib", "profanity_check/data/model.joblib"],
        },
        "vectorizer": {k: (list(v) if isinstance(v, tuple) else v) for k, v in EXPECTED.items()},
        "calibration": {
            "method": "sigmoid",
            "probability": "1 / (1 + exp(a * f + b)), f = coef . x + intercept",
            "ensemble": "arithmetic mean over folds",
        },
        "vocabulary": terms,
        "idf": [float(x) for x in vec.idf_],
        "folds": folds,
        "unicode": unicode_tables(),
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {out_path}: {n} terms, {len(folds)} folds, profanity_check {profanity_check.__version__}")


EDGE_CASES = [
    "",
    " ",
    "\n\t\r",
    "!!! ??? ... ,,, ;;;",
    "a b c d e",
    "Hello there, my friend. How are you today?",
    "Thank you for the lovely dinner last night.",
    "fuck you, you stupid idiot",
    "FUCK YOU",
    "You are a worthless piece of shit.",
    "f*ck sh!t b!tch a$$hole",
    "\u0395\u03a4\u0397\u03a4\u0397\u03a3",
    "\u0395\u03a4\u0397\u03a4\u0397\u03a3.",
    "\u0395\u03a4\u0397\u03a4\u0397\u03a3 ok",
    "\u0395\u03a4\u0397\u03a4\u0397\u03a3's",
    "\u03a3\u03a3 \u03a3 A\u03a3 A'\u03a3 A\u03a3' A\u03a3'B \u03bc\u0395\u039b",
    "\u0130stanbul \u0130DIOT",
    "JOS\u00c9 POK\u00c9MON Beyonc\u00e9 EXP\u00c9RT",
    "jose\u0301 pokemon pok\u00e9mon",
    "na\u00efve caf\u00e9 r\u00e9sum\u00e9 Stra\u00dfe STRASSE",
    "snake_case_word __init__ a_b _ __",
    "x\u00b2 \u00bd 2\u00bd \u0661\u0662\u0663 \u2163\u2164 \u00b9\u00b2\u00b3",
    "don't can't won't shouldn't",
    "e-mail re-do well-known",
    "\u01c5ungla \u01c8ubljana \u01cbnjegos",
    "\ufb01nance \ufb02uffy",
    "\uff26\uff35\uff23\uff2b \uff53\uff48\uff49\uff54",
    "\U0001f600fuck\U0001f600 \U0001f4a9shit",
    "\u200bfuck\u200b zero\u200dwidth",
    "\u212aill \u212aILL",
    "hello\u00a0world\u2003again",
    "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627 \u4f60\u597d \u3053\u3093\u306b\u3061\u306f \u7adc\u9f99 \u9023\u7d61",
    "\u12cd\u12ed\u12ed\u1275 \u0915\u094d\u0937\u093f \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35",
    "ASS ass Ass aSs",
    "123 4567 1,000 3.14 0px 00",
    "http://example.com/fuck?x=shit#bitch",
    "<b>damn</b> &amp; [crap]",
    "\u00c5ngstr\u00f6m \u212bngstr\u00f6m",
    "\u1e9e\u00df \u0149 \u01f0",
    "idiot " * 2000,
    " ".join(["word%d" % i for i in range(3000)]) + " fuck",
]


def reference(rtp_dir, out_dir):
    texts = []
    for name in ["toxic", "nontoxic"]:
        with open(f"{rtp_dir}/{name}.jsonl", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        for i, r in enumerate(rows):
            if i % 16 == 0:
                texts.append(r["prompt"]["text"])
            if i % 16 == 8:
                texts.append(r["continuation"]["text"])
            if i % 32 == 4:
                texts.append(r["prompt"]["text"] + r["continuation"]["text"])
    texts.extend(EDGE_CASES)
    scores = pc.predict_prob(texts)
    with open(f"{out_dir}/reference_scores.jsonl", "w", encoding="utf-8") as f:
        for t, s in zip(texts, scores):
            f.write(json.dumps({"text": t, "score": float(s)}, ensure_ascii=False) + "\n")
    pre = pc.vectorizer.build_preprocessor()
    tok = pc.vectorizer.build_tokenizer()
    with open(f"{out_dir}/tokens.jsonl", "w", encoding="utf-8") as f:
        for t in EDGE_CASES:
            if len(t) > 1000:
                continue
            f.write(json.dumps({"text": t, "tokens": tok(pre(t))}, ensure_ascii=False) + "\n")
    print(f"wrote {len(texts)} reference scores and {len(EDGE_CASES)} edge cases to {out_dir}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["export"] and len(sys.argv) == 4:
        export(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["reference"] and len(sys.argv) == 4:
        reference(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)

"""Case analysis: per class, the most confident right and wrong recordings,
explained and gathered into one markdown page, plus the deletion test (no Ray).

``explain_cases`` scores a records folder with ``evaluate.evaluate_folder``,
picks per true class the ``n`` most confident correct recordings (highest
probability of their class) and the ``n`` most confident wrong ones (highest
probability of the wrong prediction), draws each with the saliency of the
*predicted* class (what the model used for its decision) and writes
``cases.md`` with a one-line caption per figure. It then runs the deletion
test on up to ``deletion_records`` correctly classified recordings drawn at
random (seeded) and writes ``deletion.png`` and ``deletion.json``. ``explain_one`` is
the one-record figure of ``ecg-ray explain --record``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .. import CLASS_KEYS, CLASSES
from ..artifacts import json_safe, log_stderr
from ..evaluate import evaluate_folder
from ..plots import save
from ..predict import Predictor, load_predictor, read_input
from .faithfulness import deletion_curves
from .figures import METHOD_NAMES, deletion_figure, explanation_figure
from .saliency import default_method, explain_signal

PROB = dict(zip(CLASSES, CLASS_KEYS))


def load_explainable(checkpoint) -> Predictor:
    """A predictor whose model is the eager module (Grad-CAM needs hooks, not TorchScript)."""
    predictor = checkpoint if isinstance(checkpoint, Predictor) else load_predictor(checkpoint)
    if predictor.kind != "checkpoint":
        raise ValueError(f"{predictor.source}: explain needs the weights checkpoint (model.pt), not TorchScript")
    return predictor


def pick_cases(predictions: list[dict], n: int) -> dict[str, dict[str, list[dict]]]:
    """Per true class: ``correct`` (by p of the class) and ``wrong`` (by p of the wrong
    prediction), each the ``n`` most confident, most confident first."""
    out = {}
    for c in CLASSES:
        own = [p for p in predictions if p["label"] == c]
        right = sorted((p for p in own if p["predicted"] == c), key=lambda p: -p[f"p_{PROB[c]}"])
        wrong = sorted((p for p in own if p["predicted"] != c), key=lambda p: -p[f"p_{PROB[p['predicted']]}"])
        out[c] = {"correct": right[:n], "wrong": wrong[:n]}
    return out


def explain_record(predictor: Predictor, path: Path, name: str, method: str, layer: str | None = None, cls=None,
                   fs: float | None = None):
    """Read one record (``predict.read_input``) and explain it as the predictor scores it."""
    signal, fs = read_input(path, fs)
    return explain_signal(predictor.model, signal, fs, predictor.preprocess, name, cls=cls,
                          temperature=predictor.temperature, aggregate=predictor.aggregate,
                          method=method, layer=layer)


def explain_one(checkpoint, record: Path, out: Path | None = None, method: str | None = None,
                layer: str | None = None, cls=None, fs: float | None = None, label: str | None = None) -> dict:
    """``ecg-ray explain --record``: one record's explanation figure (``out``, default
    ``<stem>_explain.png``) and what it shows, as a dict; a ``RecordError`` for a bad record."""
    predictor = load_explainable(checkpoint)
    e = explain_record(predictor, record, record.stem, method or default_method(predictor.model), layer, cls, fs)
    out = save(explanation_figure(e, label=label), out or Path(record.stem + "_explain.png"), palette=True)
    return json_safe({"figure": str(out), "record": str(record), "predicted": e.predicted,
                      "explained_class": e.target_class, "method": e.method, "layer": e.layer,
                      "probabilities": dict(zip(CLASS_KEYS, e.probabilities)), "seconds": round(e.seconds, 2)})


def explain_cases(checkpoint, data_dir: Path, out_dir: Path, n: int = 3, labels: Path | None = None,
                  records: list[str] | None = None, method: str | None = None, layer: str | None = None,
                  deletion_records: int = 30, seed: int = 0) -> dict:
    """Write the case-analysis page and the deletion test under ``out_dir``; return a summary."""
    t0 = time.perf_counter()
    predictor = load_explainable(checkpoint)
    method = method or default_method(predictor.model)
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    metrics, predictions = evaluate_folder(predictor, data_dir, labels=labels, records=records,
                                           return_predictions=True)
    log_stderr(f"explain: scored {len(predictions)} records, F1(N,A,O) {metrics['f1_cinc']:.3f}")

    cases = pick_cases(predictions, n)
    lines = [f"# Case analysis: `{predictor.info.get('model')}`", "",
             f"- **Checkpoint**: `{predictor.source}`",
             f"- **Records**: {len(predictions)} scored in `{data_dir}`"
             + (f" ({len(records)} requested)" if records is not None else ""),
             f"- **Recording-level F1(N,A,O)** on them: {metrics['f1_cinc']:.3f}",
             f"- **Saliency**: {METHOD_NAMES[method]} of the *predicted* class, scaled to [0, 1] per record; "
             "darker red = more salient; dashed lines: segment boundaries.", ""]
    written = 0
    for c in CLASSES:
        for kind in ("correct", "wrong"):
            lines += [f"## {c}: most confident {kind}", ""]
            if not cases[c][kind]:
                lines += ["_none_", ""]
            for p in cases[c][kind]:
                e = explain_record(predictor, data_dir / p["record"], p["record"], method, layer)
                name = f"{PROB[c]}_{kind}_{p['record']}.png"
                pred = p["predicted"]
                save(explanation_figure(e, label=p["label"]), out_dir / "figures" / name, palette=True)
                caption = (f"`{p['record']}`: true **{p['label']}**, predicted **{pred}** "
                           f"(p = {p[f'p_{PROB[pred]}']:.2f})")
                lines += [f"![{p['record']}](figures/{name})", "", caption, ""]
                written += 1
    log_stderr(f"explain: {written} case figures written")

    deletion = None
    correct = [p for p in predictions if p["label"] == p["predicted"]]
    if deletion_records and correct:
        rng = np.random.default_rng(seed)
        chosen = [correct[i] for i in sorted(rng.choice(len(correct), min(deletion_records, len(correct)),
                                                        replace=False))]
        explained = [explain_record(predictor, data_dir / p["record"], p["record"], method, layer) for p in chosen]
        curves = deletion_curves(predictor.model, explained, predictor.preprocess, seed=seed)
        deletion = curves.to_dict()
        deletion.update(records=[p["record"] for p in chosen], method=method, per_record=curves.per_record)
        (out_dir / "deletion.json").write_text(json.dumps(json_safe(deletion), indent=1))
        save(deletion_figure(curves), out_dir / "deletion.png", palette=True)
        lines += ["## Faithfulness: deletion test", "", "![deletion test](deletion.png)", "",
                  f"{curves.n_records} correctly classified records drawn at random (seed {seed}); windows of "
                  "0.1 s masked to 0, most salient first vs at random (3 draws). Area under the probability "
                  f"curve: salient {curves.area_salient:.3f}, random {curves.area_random:.3f}; "
                  f"**difference {curves.area_difference:+.3f}** (positive: the saliency finds what the model "
                  "uses).", ""]
        log_stderr(f"explain: deletion test on {curves.n_records} records, area difference "
                   f"{curves.area_difference:+.3f}")
    (out_dir / "cases.md").write_text("\n".join(lines))
    return json_safe({"out": str(out_dir), "page": str(out_dir / "cases.md"), "records_scored": len(predictions),
                      "f1_cinc": metrics["f1_cinc"], "figures": written, "method": method,
                      "deletion_area_difference": deletion["area_difference"] if deletion else None,
                      "seconds": round(time.perf_counter() - t0, 1)})

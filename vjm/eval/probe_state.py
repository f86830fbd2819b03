"""What a probe leaves on disk: its resumable state (saved every epoch) and its results file.

A state belongs to one config and one encoder; resuming with another is refused, naming what
differs. Both files are written atomically.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .config import EvalConfig, eval_config_from_dict
from .data import EvalData

if TYPE_CHECKING:
    from .frozen import EncoderInfo

__all__ = ["PROBE_FORMAT", "RESULTS_FILE", "STATE_FILE", "ProbeResult", "best_head", "load_state", "pick_head",
           "read_record", "save_state", "write_results"]

PROBE_FORMAT = "vjm-probe-v1"
STATE_FILE = "latest.pt"
RESULTS_FILE = "results.json"
# Keys that change how a run goes, not what it computes: a resumed run may differ in them.
RESUME_FREE_KEYS = {("data", "num_workers"), ("data", "pin_memory"), ("train", "log_every"),
                    ("train", "feature_cache_dir"), ("train", "cache_features"), ("run", "folder")}


def _comparable(cfg_dict: dict) -> dict:
    return {section: {k: v for k, v in keys.items() if (section, k) not in RESUME_FREE_KEYS}
            for section, keys in cfg_dict.items()}


def save_state(path: Path, state: dict) -> None:
    """Atomic write: an interrupted save leaves the previous state intact."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save({"format": PROBE_FORMAT, **state}, tmp)
    os.replace(tmp, path)


def load_state(path: Path, cfg: EvalConfig, info: EncoderInfo) -> dict:
    """The probe state saved at ``path``, checked to belong to this config and encoder."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"probe state {path} could not be read ({type(exc).__name__}: {exc}); delete it or "
                         "pass --no-resume to start over") from exc
    if not isinstance(state, dict) or state.get("format") != PROBE_FORMAT:
        raise ValueError(f"{path} is not a probe state (format {PROBE_FORMAT!r}); delete it or pass --no-resume")
    if state["encoder"] != dataclasses.asdict(info):
        raise ValueError(f"{path} is a probe of another encoder ({state['encoder']}), not of "
                         f"{dataclasses.asdict(info)}; pass --no-resume to start over, or another --output-dir")
    saved = eval_config_from_dict(state["config"], where=f"{path} (saved config)")
    old, new = _comparable(saved.to_dict()), _comparable(cfg.to_dict())
    if old != new:
        changed = sorted(f"{s}.{k}" for s in new for k in new[s] if old.get(s, {}).get(k) != new[s][k])
        raise ValueError(f"{path} was trained with another config (differs in {', '.join(changed)}); pass "
                         "--no-resume to start over, or another --output-dir")
    return state


@dataclass
class ProbeResult:
    top1: float
    top5: float
    results_path: Path
    results: dict


def pick_head(record: dict[str, Any]) -> int:
    """The head with the best top-1 on the held-out training clips where the probe has some, else on the
    validation clips."""
    scores = record["holdout"] if "holdout" in record else record["val"]
    return max(range(len(scores)), key=lambda i: scores[i]["top1"])


def read_record(history: list[dict[str, Any]], early_stopping: bool) -> tuple[dict[str, Any], list[int]]:
    """The record a probe is read from, and the epoch of each head in it: the last epoch's; or, with early
    stopping, each head's readings at the validated epoch where its held-out top-1 was best (the first of
    equals, so a head is not read later than it needs to be)."""
    last = history[-1]
    if not early_stopping:
        return last, [last["epoch"]] * len(last["val"])
    validated = [record for record in history if "holdout" in record]
    chosen = [max(validated, key=lambda record: (record["holdout"][i]["top1"], -record["epoch"]))
              for i in range(len(last["val"]))]
    read = {split: [record[split][i] for i, record in enumerate(chosen)] for split in ("train", "holdout", "val")}
    return read, [record["epoch"] for record in chosen]


def write_results(out_dir: Path, cfg: EvalConfig, info: EncoderInfo, history: list[dict[str, Any]],
                  num_classes: int, data: EvalData) -> ProbeResult:
    """results.json: the best head's top-1 / top-5 on the validation clips, every head's, the history,
    chance. Heads are read at the last epoch, or with train.early_stopping each at its own best epoch on
    the held-out training clips (read_record). The best head is picked on the held-out training clips
    where there are some; ``top1_picked_on_val`` is the last epoch's best top-1 on the validation clips
    either way (V-JEPA's reading)."""
    last = history[-1]
    read, epochs = read_record(history, cfg.train.early_stopping)
    best, on_val = pick_head(read), pick_head({"val": last["val"]})
    heads = [{"lr": lr, "weight_decay": wd, "epoch": epochs[i], "top1": read["val"][i]["top1"],
              "top5": read["val"][i]["top5"],
              "best_epoch_top1": max(h["val"][i]["top1"] for h in history if "val" in h),
              "train_loss": read["train"][i]["loss"], "train_top1": read["train"][i]["top1"],
              **({"holdout_top1": read["holdout"][i]["top1"]} if "holdout" in read else {})}
             for i, (lr, wd) in enumerate(cfg.optim.grid)]
    held = 0 if data.holdout_positions is None else len(data.holdout_positions)
    results = {"eval": cfg.run.name, "top1": read["val"][best]["top1"], "top5": read["val"][best]["top5"],
               "best_head": best, "best_head_epoch": epochs[best], "early_stopping": cfg.train.early_stopping,
               "picked_on": "held-out training clips" if held else "validation clips",
               "top1_picked_on_val": last["val"][on_val]["top1"], "chance_top1": 100.0 / num_classes,
               "num_classes": num_classes, "num_holdout": held,
               "num_train": len(data.train) if data.train_positions is None else len(data.train_positions),
               "num_val": len(data.val), "epochs": len(history), "encoder": dataclasses.asdict(info),
               "heads": heads, "history": history, "config": cfg.to_dict()}
    path = out_dir / RESULTS_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, path)
    return ProbeResult(results["top1"], results["top5"], path, results)


def best_head(folder: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """The weights of the best head of the finished probe in ``folder`` (the one its results name, at the
    epoch it was read: with early stopping, the copy kept then) and its results: a classifier that
    fine-tuning can start from."""
    folder = Path(folder)
    results_path, state_path = folder / RESULTS_FILE, folder / STATE_FILE
    if not results_path.is_file() or not state_path.is_file():
        raise ValueError(f"{folder} is not a finished probe: it needs {RESULTS_FILE} and {STATE_FILE}, as "
                         "python -m evals.attentive_probe --output-dir FOLDER leaves them")
    results = json.loads(results_path.read_text())
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != PROBE_FORMAT or "best_head" not in results:
        raise ValueError(f"{folder} does not hold a probe of format {PROBE_FORMAT!r}")
    weights = state.get("early_stopped_heads") or state["heads"]
    prefix = f"{results['best_head']}."
    return {key[len(prefix):]: value for key, value in weights.items() if key.startswith(prefix)}, results

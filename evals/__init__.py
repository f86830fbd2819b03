"""Evaluations the user runs from the repository root; the library they call is vjm.eval.

    python -m evals.attentive_probe --fname configs/eval/toy_direction.yaml --checkpoint runs/vjepa_tiny/latest.pt
    python -m evals.quality --checkpoint runs/vjepa_tiny/latest.pt     # the toy-quality experiment
"""

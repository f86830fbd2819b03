"""Evaluations of frozen encoders: the attentive probe (``python -m evals.attentive_probe``).

    evals.config     the evaluation config (YAML -> EvalConfig)
    evals.data       training / evaluation datasets of an evaluation
    evals.features   frozen-encoder tokens, without autograd, cached per epoch when clips are fixed
    evals.probe      the attentive pooler and classifier, view averaging
"""

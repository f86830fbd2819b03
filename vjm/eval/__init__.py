"""Evaluation of pre-trained encoders: the library behind ``python -m evals.attentive_probe``.

    vjm.eval.config       the evaluation config (YAML -> EvalConfig; its data section extends pre-training's)
    vjm.eval.data         training / evaluation datasets of an evaluation
    vjm.eval.frozen       checkpoint -> frozen encoder (any objective's), and the random-init control
    vjm.eval.features     frozen-encoder tokens without autograd, cached when clips are fixed
    vjm.eval.tokens       batches of frozen tokens for an epoch, from the cache or through the encoder
    vjm.eval.pooler       the attentive pooler and classifier, view averaging
    vjm.eval.probe        the attentive probe: train, validate, resume (run_probe)
    vjm.eval.probe_state  a probe's resumable state and its results file
"""

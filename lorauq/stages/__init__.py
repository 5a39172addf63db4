"""The pipeline's stages, one module each: what each ``dvc.yaml`` stage (and its notebook) runs.

A stage module imports only the code its stage executes, so ``dvc.yaml`` can list exactly
those modules as the stage's dependencies: a change to the plotting code reruns the figures,
not the fine-tuning (``tests/test_stage_deps.py`` keeps the two in step).
"""

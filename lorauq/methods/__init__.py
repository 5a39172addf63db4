"""Rival uncertainty methods, each a way to produce samples of the letter logits per question.

Every method writes rows of the logits store (:mod:`lorauq.store`), one ``member`` per sample,
so the analysis that reads an ensemble (entropy, expected entropy, mutual information) reads
every method the same way. All of them start from member 0 of the main ensemble.
"""

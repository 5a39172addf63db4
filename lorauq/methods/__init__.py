"""Rival uncertainty methods, each a way to produce samples of the letter logits per question.

Every method writes rows of the logits store (:mod:`lorauq.store`), one ``member`` per sample,
so the analysis that reads an ensemble (entropy, expected entropy, mutual information) reads
every method the same way. All of them start from the main ensemble's members: once per
member where a method needs nothing else, from member 0 where it fits or trains.
"""

__all__: list[str] = []

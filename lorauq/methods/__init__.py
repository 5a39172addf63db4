"""Rival uncertainty methods, each a way to produce samples of the letter logits per question.

Every method writes rows of the logits store (:mod:`lorauq.store`), one ``member`` per sample,
so the analysis that reads an ensemble (entropy, expected entropy, mutual information) reads
every method the same way. All of them start from the main ensemble's members: once per
member where a method needs nothing else, from member 0 where it fits or trains.

:mod:`lorauq.methods.registry` lists them, one record each; each has its own module here
(``single``, ``mc_dropout``, ``checkpoints``, ``temperature``, ``laplace``), ``posthoc`` holds
what the read-out methods share, ``report`` the methods table, ``pipeline`` writes their DVC
stage.
"""

__all__: list[str] = []
